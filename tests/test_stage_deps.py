"""dvc.yaml's deps cannot drift from the code: each stage's deps must cover every project module
its script imports (transitively), and ``report`` must follow ``evaluate.models``.

A module a stage imports but does not list is an edit DVC would not see: the stage's outputs
would stay "up to date" while the code that made them changed.
"""

from __future__ import annotations

import ast
import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = "complexif"
VAR = re.compile(r"\$\{\s*([\w.]+)\s*\}")


# --------------------------------------------------------------------------------------------
# dvc.yaml, resolved as DVC resolves it


def _lookup(context: dict[str, Any], dotted: str) -> Any:
    node: Any = context
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"dvc.yaml: ${{{dotted}}} is not defined in params.yaml")
        node = node[part]
    return node


def _resolve(value: Any, context: dict[str, Any]) -> Any:
    """``${a.b}`` interpolation: a whole-string reference keeps its type, else it is text."""
    if isinstance(value, str):
        whole = VAR.fullmatch(value.strip())
        if whole:
            return _lookup(context, whole.group(1))
        return VAR.sub(lambda m: str(_lookup(context, m.group(1))), value)
    if isinstance(value, list):
        return [_resolve(v, context) for v in value]
    if isinstance(value, dict):
        return {_resolve(k, context): _resolve(v, context) for k, v in value.items()}
    return value


def _paths(entries: list[Any]) -> list[str]:
    """deps/outs entries are a path or ``{path: options}``."""
    out = []
    for entry in entries or []:
        out.extend([entry] if isinstance(entry, str) else list(entry))
    return [p.rstrip("/") for p in out]


def stages(params: dict[str, Any], dvc_yaml: dict[str, Any] | None = None) -> dict[str, dict]:
    """Every stage (foreach expanded to ``name@item``) with its cmd, deps and outs resolved."""
    if dvc_yaml is None:
        dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    out = {}
    for name, spec in dvc_yaml["stages"].items():
        if "foreach" in spec:
            items = _resolve(spec["foreach"], params)
            variants = [(f"{name}@{item}", {**params, "item": item}) for item in items]
            body = spec["do"]
        else:
            variants, body = [(name, params)], spec
        for stage, context in variants:
            resolved = _resolve(copy.deepcopy(body), context)
            out[stage] = {
                "cmd": resolved["cmd"],
                "deps": _paths(resolved.get("deps", [])),
                "outs": [
                    p for key in ("outs", "metrics", "plots") for p in _paths(resolved.get(key, []))
                ],
            }
    return out


def repo_params() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))


def _script(cmd: str) -> Path:
    match = re.match(r"python -m (stages\.\w+)", cmd)
    assert match, f"dvc.yaml: unexpected stage command {cmd!r} (expected python -m stages.<x>)"
    return REPO_ROOT / (match.group(1).replace(".", "/") + ".py")


# --------------------------------------------------------------------------------------------
# Import closure


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _package_of(path: Path) -> list[str]:
    """The package a file's relative imports start from."""
    if SRC not in path.parents:
        return []
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return parts[:-1]  # a module's package; for __init__.py the package itself


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _imported_names(path: Path) -> Iterator[str]:
    """Every dotted name an import in ``path`` may load: at module level or inside a function
    (a lazy import runs when the function does), not under ``if TYPE_CHECKING``."""
    package = _package_of(path)

    def visit(node: ast.AST) -> Iterator[str]:
        if _type_checking_only(node):
            yield from (n for stmt in node.orelse for n in visit(stmt))  # type: ignore[attr-defined]
            return
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            # `from complexif.llm import session` imports the module complexif.llm.session.
            yield from (f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))


def import_closure(script: Path) -> dict[Path, list[Path]]:
    """Project files ``script`` loads, each with the chain of files that imports it.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too, so they count.
    """
    chains: dict[Path, list[Path]] = {script: [script]}
    todo = [script]
    while todo:
        current = todo.pop()
        for name in _imported_names(current):
            parts = name.split(".")
            if parts[0] != PACKAGE:
                continue
            for i in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in chains:
                    chains[found] = [*chains[current], found]
                    todo.append(found)
    return chains


def _covers(dep: str, path: Path) -> bool:
    dep_path = REPO_ROOT / dep
    return path == dep_path or dep_path in path.parents


def _rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


STAGES = stages(repo_params())


# --------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_every_project_module_it_imports(stage):
    spec = STAGES[stage]
    closure = import_closure(_script(spec["cmd"]))
    missing = {
        path: chain
        for path, chain in closure.items()
        if not any(_covers(dep, path) for dep in spec["deps"])
    }
    assert not missing, f"dvc.yaml: stage {stage} does not list modules it imports:\n" + "\n".join(
        f"  - {_rel(path)}    (via {' -> '.join(_rel(p) for p in chain[:-1])})"
        for path, chain in sorted(missing.items())
    )


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_code_deps_are_all_used(stage):
    # Over-listing re-runs a stage for edits that cannot change its outputs.
    spec = STAGES[stage]
    closure = import_closure(_script(spec["cmd"]))
    code_deps = [d for d in spec["deps"] if d.startswith(("src/", "stages/"))]
    unused = [d for d in code_deps if not any(_covers(d, path) for path in closure)]
    assert not unused, f"dvc.yaml: stage {stage} lists code it never imports: {unused}"


def test_every_dep_exists_or_is_made_by_a_stage():
    # A renamed prompt template or module left behind in dvc.yaml would fail only at `dvc repro`.
    outs = [o for spec in STAGES.values() for o in spec["outs"]]
    missing = sorted(
        f"{stage}: {dep}"
        for stage, spec in STAGES.items()
        for dep in spec["deps"]
        if not (REPO_ROOT / dep).exists()
        and not any(dep == o or dep.startswith(o + "/") or o.startswith(dep + "/") for o in outs)
    )
    assert not missing, f"dvc.yaml deps that nothing provides: {missing}"


def test_the_closure_follows_lazy_relative_and_module_imports(tmp_path, monkeypatch):
    # The walker itself: a lazy import inside a function, a relative import, `from pkg import
    # module`, and a TYPE_CHECKING-only import (which never runs, so it is not a dependency).
    pkg = tmp_path / "src" / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from complexif.sub.c import x\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from complexif import d\nx = 1\n"
    )
    (pkg / "d.py").write_text("")
    script = tmp_path / "stages" / "s.py"
    script.parent.mkdir()
    script.write_text("from complexif.sub import a\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "src")
    found = {p.relative_to(tmp_path).as_posix() for p in import_closure(script)}
    assert found == {
        "stages/s.py",
        "src/complexif/__init__.py",
        "src/complexif/sub/__init__.py",
        "src/complexif/sub/a.py",
        "src/complexif/sub/b.py",
        "src/complexif/sub/c.py",
    }


def _upstream(all_stages: dict[str, dict], stage: str) -> set[str]:
    """Stages DVC links to ``stage``: an out equal to, inside or above one of its deps."""

    def overlaps(dep: str, out: str) -> bool:
        return dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")

    deps = all_stages[stage]["deps"]
    return {
        name
        for name, spec in all_stages.items()
        if name != stage and any(overlaps(d, o) for d in deps for o in spec["outs"])
    }


@pytest.mark.parametrize("models", [["base", "sft", "dpo"], ["base", "dpo"], ["sft"]])
def test_report_follows_evaluate_models(models):
    params = repo_params()
    params["evaluate"]["models"] = models
    resolved = stages(params)
    evaluated = {f"evaluate@{m}" for m in models}
    # The curation stages with a funnel feed its table, publish its links to the dataset
    # cards; every other input is an evaluation.
    funnels = {n for n, spec in resolved.items() if any("/funnel/" in o for o in spec["outs"])}
    feeders = evaluated | funnels | {"publish"}
    assert funnels and _upstream(resolved, "report") == feeders
    # Every input of the report (other than its code) is something those stages write: none
    # names a model by hand, so none can be missing or stale when the list changes.
    outs = [o for name in feeders for o in resolved[name]["outs"]]
    # (The papers' quoted figures are reference data, shipped like the benchmarks.)
    static = ("src/", "stages/", "data/benchmarks/")
    data = [d for d in resolved["report"]["deps"] if not d.startswith(static)]
    assert data and all(
        any(d == o or o.startswith(d + "/") or d.startswith(o + "/") for o in outs) for d in data
    ), data


def test_report_follows_evaluate_models_in_dvc_itself(tmp_path):
    # The same, asked of DVC: `dvc dag` on dvc.yaml with evaluate.models = [base, dpo].
    shutil.copy(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = repo_params()
    params["evaluate"]["models"] = ["base", "dpo"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    dot = subprocess.run(
        [*dvc, "dag", "--dot", "report"], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    into_report = {src for src, dst in edges if dst == "report"}
    evaluations = {s for s in into_report if s.startswith("evaluate@")}
    assert evaluations == {"evaluate@base", "evaluate@dpo"}, dot
    assert all(s.startswith("conifer_") or s == "publish" for s in into_report - evaluations), dot
