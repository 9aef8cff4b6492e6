"""`complexif params snapshot`: the published recipe is exactly the one dvc.lock ran."""

import json
import shutil

import pytest
import yaml

from complexif.publish import snapshot
from tests.conftest import REPO_ROOT


def _lock(params: dict) -> dict:
    return {
        "schema": "2.0",
        "stages": {
            "train_dpo": {
                "cmd": "python -m stages.train_dpo",
                "params": {
                    "params.yaml": {"train.dpo": params["train"]["dpo"], "train.device": "auto"}
                },
            }
        },
    }


def test_snapshot_copies_the_recipe_and_refuses_a_stale_lock(tmp_path):
    params_path = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", params_path)
    params = yaml.safe_load(params_path.read_text())
    lock = _lock(params)
    lock["stages"]["train_dpo"]["params"]["params.yaml"]["train.dpo"]["learning_rate"] = str(
        params["train"]["dpo"]["learning_rate"]
    )  # how DVC writes 5.0e-5: a string, still the same value
    lock_path = tmp_path / "dvc.lock"
    lock_path.write_text(yaml.safe_dump(lock))
    written = snapshot(tmp_path / "out", params_path, lock_path)
    assert [p.name for p in written] == ["params.yaml", "dvc.lock", "run.json"]
    assert (tmp_path / "out/params.yaml").read_text() == params_path.read_text()
    assert json.loads((tmp_path / "out/run.json").read_text())["machine"]["cpus"] >= 1

    lock["stages"]["train_dpo"]["params"]["params.yaml"]["train.dpo"]["beta"] = 0.5
    lock_path.write_text(yaml.safe_dump(lock))
    with pytest.raises(ValueError, match=r"other values of \['train.dpo'\].*dvc repro"):
        snapshot(tmp_path / "out2", params_path, lock_path)
    assert not (tmp_path / "out2").exists()
