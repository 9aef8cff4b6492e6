"""models/base comes out byte for byte the same on any machine: the files save_pretrained stamps
with the running transformers release are normalised, so a different 5.x (or a different source
path) does not change the DVC hash and re-run every stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from complexif.llm.model_source import prepare_base_model, saved_format_version


def as_transformers(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """Make the installed transformers report ``version`` wherever it stamps saved files."""
    import transformers
    import transformers.configuration_utils as config_utils
    import transformers.generation.configuration_utils as generation_utils

    for module in (transformers, config_utils, generation_utils):
        monkeypatch.setattr(module, "__version__", version)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_prepare_model_writes_the_same_bytes_under_any_transformers_release(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = []
    # Two releases and two source locations, as on two machines.
    for i, version in enumerate(["5.3.1", "5.99.0"]):
        source = tmp_path / f"machine{i}" / "somewhere" / "source"
        shutil.copytree(tiny_model_dir, source)
        with monkeypatch.context() as m:
            as_transformers(m, version)
            out = tmp_path / f"out{i}"
            prepare_base_model(str(source), out, None, None, "float32")
        outputs.append(files(out))
    first, second = outputs
    assert {"config.json", "generation_config.json", "model.safetensors"} <= set(first)
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, differing
    config = json.loads(first["config.json"])
    assert config["transformers_version"] == "5.0.0"
    assert json.loads(first["generation_config.json"])["transformers_version"] == "5.0.0"


def test_the_normalised_model_loads_and_keeps_its_config(tiny_model_dir: Path, tmp_path: Path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "base"
    prepare_base_model(str(tiny_model_dir), out, None, None, "float32")
    before = AutoConfig.from_pretrained(tiny_model_dir).to_diff_dict()
    after = AutoConfig.from_pretrained(out).to_diff_dict()
    assert before == after  # to_diff_dict stamps the running release on both
    AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).chat_template


@pytest.mark.parametrize(
    ("version", "saved"),
    [("5.24.0", "5.0.0"), ("5.0.0rc1", "5.0.0"), ("6.1.2.dev0", "6.0.0")],
)
def test_saved_format_version_keeps_the_major_release(version: str, saved: str) -> None:
    assert saved_format_version(version) == saved
