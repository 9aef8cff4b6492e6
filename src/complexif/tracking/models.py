"""Trained models in the MLflow Model Registry: one registered model per method
(``complexif-sft``, ``complexif-dpo``, ...), a version per training run, the evaluation's figures
as tags on the version, and an alias (``best``) on the version with the best chosen figure.

A version is found again by its fingerprint (:func:`model_fingerprint` of the DVC output), so the
evaluation of ``models/dpo`` scores exactly the version that holds those weights, whichever run
logged it; a model DVC restored without running its stage is registered when it is evaluated.

What a version stores is the model directory as DVC keeps it: an adapter stack logs only its
adapters, its base being another registered model (``complexif-base``), logged once per base
fingerprint; whole weights are logged whole.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from complexif.io import atomic_open

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from complexif.tracking.chat_model import ChatSettings

log = logging.getLogger(__name__)

TAG_FINGERPRINT = "complexif.fingerprint"
TAG_SOURCE_DIR = "complexif.model_dir"
TAG_REGISTERED_BY = "complexif.registered_by"
DOWNLOAD_ROOT = Path(".cache/complexif/registry")
_DONE = ".complete"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _client() -> MlflowClient:
    import mlflow
    from mlflow import MlflowClient

    from complexif.tracking.run import tracking_uri

    if not mlflow.tracking.is_tracking_uri_set():
        mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient()


def find_version(client: MlflowClient, name: str, fingerprint: str) -> ModelVersion | None:
    """The newest version of ``name`` holding the weights with ``fingerprint``; None if none."""
    versions = client.search_model_versions(
        f"name = '{name}' and tags.`{TAG_FINGERPRINT}` = '{fingerprint}'"
    )
    return max(versions, key=lambda v: int(v.version), default=None)


def register_model(
    model_dir: str | Path,
    name: str,
    settings: ChatSettings,
    *,
    base_name: str,
    registered_by: str,
) -> RegisteredVersion:
    """Log ``model_dir`` as a model of the active run and register it as a new version of
    ``name``. An adapter stack's base is registered under ``base_name`` first, unless a version
    with its fingerprint exists."""
    import mlflow

    from complexif.llm.stored_model import read_stack, resolve_base, write_stack
    from complexif.llm.transformers_backend import model_fingerprint
    from complexif.tracking.chat_model import ENTRY_POINT, MODEL_ARTIFACT, model_config, signature

    client = _client()
    model_dir = Path(model_dir)
    fingerprint = model_fingerprint(model_dir)
    stack = read_stack(model_dir)
    with tempfile.TemporaryDirectory(prefix="complexif-register-") as tmp:
        artifact = model_dir
        if stack is not None:
            base = ensure_registered(
                resolve_base(model_dir, stack),
                base_name,
                settings,
                base_name=base_name,
                registered_by=registered_by,
            )
            # The registered copy names its base by registry URI, so it loads on any machine
            # that reaches this tracking server, with or without the DVC workspace.
            artifact = Path(tmp) / model_dir.name
            shutil.copytree(model_dir, artifact)
            write_stack(artifact, replace(stack, base=base.uri))
        with warnings.catch_warnings():
            # No input example: MLflow would load and run the model to check it.
            warnings.simplefilter("ignore")
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(ENTRY_POINT),
                model_config=model_config(settings),
                signature=signature(settings),
                artifacts={MODEL_ARTIFACT: str(artifact)},
                registered_model_name=name,
                pip_requirements=_requirements(),
                metadata={TAG_FINGERPRINT: fingerprint},
                await_registration_for=0,
            )
    version = RegisteredVersion(name, str(info.registered_model_version))
    for key, value in {
        TAG_FINGERPRINT: fingerprint,
        TAG_SOURCE_DIR: str(model_dir),
        TAG_REGISTERED_BY: registered_by,
    }.items():
        client.set_model_version_tag(name, version.version, key, value)
    log.info("registered %s as %s", model_dir, version.uri)
    return version


def ensure_registered(
    model_dir: str | Path,
    name: str,
    settings: ChatSettings,
    *,
    base_name: str,
    registered_by: str,
) -> RegisteredVersion:
    """The version of ``name`` holding ``model_dir``'s weights, registered now if none does."""
    from complexif.llm.transformers_backend import model_fingerprint

    found = find_version(_client(), name, model_fingerprint(model_dir))
    if found is not None:
        return RegisteredVersion(name, str(found.version))
    return register_model(
        model_dir, name, settings, base_name=base_name, registered_by=registered_by
    )


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("torch", "transformers", "peft", "safetensors", "pandas", "mlflow"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


@dataclass(frozen=True)
class AliasRule:
    """Which version an alias points at: the one with the best ``metric`` tag."""

    alias: str
    metric: str
    higher_is_better: bool


def record_scores(
    version: RegisteredVersion, scores: Mapping[str, float], rule: AliasRule | None
) -> bool:
    """Tag ``version`` with ``scores``; move ``rule.alias`` to it if its ``rule.metric`` beats
    the version the alias points at now (or the alias points nowhere). Returns whether it moved."""
    client = _client()
    for key, value in scores.items():
        client.set_model_version_tag(version.name, version.version, key, f"{value:.6g}")
    if rule is None or rule.metric not in scores:
        return False
    mine = float(scores[rule.metric])
    try:
        current = client.get_model_version_by_alias(version.name, rule.alias)
    except Exception:  # no such alias yet
        current = None
    if current is not None and str(current.version) != version.version:
        theirs = current.tags.get(rule.metric)
        if theirs is not None:
            better = mine > float(theirs) if rule.higher_is_better else mine < float(theirs)
            if not better:
                return False
    client.set_registered_model_alias(version.name, rule.alias, version.version)
    log.info(
        "%s@%s -> version %s (%s = %s)",
        version.name,
        rule.alias,
        version.version,
        rule.metric,
        mine,
    )
    return True


def is_registry_uri(text: str) -> bool:
    return text.startswith("models:/")


def resolve_registry_uri(uri: str) -> RegisteredVersion:
    """``models:/name/version``, ``models:/name@alias`` or ``models:/name/latest`` as a version."""
    client = _client()
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return RegisteredVersion(name, str(client.get_model_version_by_alias(name, alias).version))
    name, _, version = rest.rpartition("/")
    if not name:
        raise ValueError(f"{uri}: expected models:/<name>/<version> or models:/<name>@<alias>")
    if version == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ValueError(f"{uri}: registered model {name!r} has no versions")
        version = str(max(int(v.version) for v in versions))
    return RegisteredVersion(name, version)


def download_model_dir(uri: str, root: Path = DOWNLOAD_ROOT) -> Path:
    """The stored model directory of a registered model, downloaded once into ``root``
    (``<root>/<name>/<version>-<store>``) and reused afterwards."""
    import hashlib

    import mlflow
    import yaml

    from complexif.tracking.chat_model import MODEL_ARTIFACT

    version = resolve_registry_uri(uri)
    # Another tracking store has its own version 1 of the same name: never serve one for the
    # other. The creation time tells a re-created version from the one downloaded before.
    created = _client().get_model_version(version.name, version.version).creation_timestamp
    store = hashlib.sha256(f"{mlflow.get_tracking_uri()}|{created}".encode()).hexdigest()[:12]
    target = (root / version.name / f"{version.version}-{store}").resolve()
    if not (target / _DONE).is_file():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(artifact_uri=version.uri, dst_path=str(target))
        with atomic_open(target / _DONE) as fh:
            fh.write(version.uri + "\n")
    conf = yaml.safe_load((target / "MLmodel").read_text(encoding="utf-8"))
    artifacts: dict[str, Any] = conf["flavors"]["python_function"].get("artifacts", {})
    if MODEL_ARTIFACT not in artifacts:
        raise ValueError(f"{uri}: not a ComplexIF model (no '{MODEL_ARTIFACT}' artifact)")
    return localize(target / artifacts[MODEL_ARTIFACT]["path"])


def localize(model_dir: Path) -> Path:
    """``model_dir`` ready to load here: a stack whose base is a registry URI gets that base
    downloaded and its stack file pointed at the local copy (the fingerprint still checks it)."""
    import os

    from complexif.llm.stored_model import read_stack, write_stack

    stack = read_stack(model_dir)
    if stack is not None and is_registry_uri(stack.base):
        base = download_model_dir(stack.base)
        write_stack(model_dir, replace(stack, base=os.path.relpath(base, model_dir)))
    return model_dir


# ---------------------------------------------------------------------------------------------
# What the stages call: params in, nothing to do when the registry or tracking is off.

TAG_REGISTERED_MODEL = "complexif.registered_model"


def chat_settings(params: Any) -> ChatSettings:
    """A registered model generates as the pipeline's evaluation does."""
    from complexif.tracking.chat_model import ChatSettings

    g = params.evaluate.generation
    return ChatSettings(
        engine=g.engine,
        precision=g.precision,
        batch_size=g.batch_size,
        max_new_tokens=g.max_new_tokens,
        device=params.train.device,
    )


def _registered_name(params: Any, model: str, run: Any) -> str | None:
    reg = params.registry
    if not (reg.enabled and run.enabled):
        return None
    return reg.names.get(model)


def register_trained(params: Any, model: str, run: Any) -> RegisteredVersion | None:
    """Register the model a train stage just wrote (``models/<model>``) as a new version."""
    name = _registered_name(params, model, run)
    if name is None:
        return None
    version = register_model(
        params.paths.model_dir(model),
        name,
        chat_settings(params),
        base_name=params.registry.names["base"],
        registered_by=run.stage,
    )
    run.set_tags({TAG_REGISTERED_MODEL: version.uri})
    return version


def record_evaluation(
    params: Any, model: str, run: Any, metrics: Mapping[str, float]
) -> RegisteredVersion | None:
    """Put an evaluation's scores (flattened MLflow metric keys) on the version holding
    ``models/<model>`` (registered now if no run registered it, e.g. DVC restored the training
    from its run cache), and move the alias if it is the best version."""
    name = _registered_name(params, model, run)
    if name is None:
        return None
    reg = params.registry
    version = ensure_registered(
        params.paths.model_dir(model),
        name,
        chat_settings(params),
        base_name=reg.names["base"],
        registered_by=run.stage,
    )
    scores = {k: float(metrics[k]) for k in reg.scores if k in metrics}
    rule = AliasRule(reg.alias, reg.alias_metric, reg.higher_is_better)
    if record_scores(version, scores, rule):
        run.set_tags({f"{TAG_REGISTERED_MODEL}.alias": f"{name}@{reg.alias}"})
    run.set_tags({TAG_REGISTERED_MODEL: version.uri})
    return version
