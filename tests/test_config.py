import pytest
import yaml

from complexif.config import ConfigError, Params, deep_merge, load_params
from complexif.presets import apply_preset
from tests.conftest import REPO_ROOT


def test_shipped_params_load_and_match_the_defaults_schema():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.evaluate.models == ["base", "sft", "dpo"]
    assert sum(params.compose.k_distribution.values()) == pytest.approx(1.0)


def test_unknown_key_is_an_error_naming_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  sft:\n    max_stpes: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert str(path) in str(exc.value) and "train.sft.max_stpes" in str(exc.value)


def test_k_distribution_outside_one_to_five_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("compose:\n  k_distribution: {0: 1.0, 6: 1.0}\n")
    with pytest.raises(ConfigError, match="1..5"):
        load_params(path)


def test_presets_merge_keep_comments_and_validate(tmp_path):
    out = apply_preset(
        REPO_ROOT / "presets/tiny.yaml", REPO_ROOT / "params.yaml", tmp_path / "p.yaml"
    )
    text = out.read_text()
    assert "# ComplexIF parameters" in text
    params = load_params(out)
    assert params.seeds.n == 6
    assert params.compose.k_distribution == {1: 0.3, 2: 0.4, 3: 0.3}  # replaced, not merged
    # Untouched keys keep the params file's values.
    assert (
        params.train.sft.learning_rate
        == load_params(REPO_ROOT / "params.yaml").train.sft.learning_rate
    )
    full = load_params(
        apply_preset(
            REPO_ROOT / "presets/full.yaml", REPO_ROOT / "params.yaml", tmp_path / "f.yaml"
        )
    )
    assert full.evaluate.ifeval.subset is None and full.seeds.n is None


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO_ROOT / "presets").glob("*.yaml")))
def test_every_shipped_preset_applies_and_validates(tmp_path, preset):
    out = apply_preset(
        REPO_ROOT / "presets" / preset, REPO_ROOT / "params.yaml", tmp_path / "p.yaml"
    )
    load_params(out)


def test_local_server_preset_points_both_roles_at_the_api():
    out = load_params(REPO_ROOT / "params.yaml").model_dump()
    preset = yaml.safe_load((REPO_ROOT / "presets/local_server.yaml").read_text())
    merged = Params.model_validate(deep_merge(out, preset))
    for role in (merged.respond.student, merged.correct.teacher):
        assert role.backend == "openai"
        assert role.api.base_url == "http://127.0.0.1:8000/v1"


def test_preset_with_unknown_key_is_rejected_before_writing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  sft:\n    max_stpes: 3\n")
    with pytest.raises(ConfigError, match="max_stpes"):
        apply_preset(bad, REPO_ROOT / "params.yaml", tmp_path / "out.yaml")
    assert not (tmp_path / "out.yaml").exists()


def test_cli_params_apply_and_show(tmp_path, capsys):
    from complexif.cli import main

    out = tmp_path / "p.yaml"
    assert (
        main(
            [
                "params",
                "apply",
                str(REPO_ROOT / "presets/tiny.yaml"),
                "--params",
                str(REPO_ROOT / "params.yaml"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert main(["params", "show", "--params", str(out)]) == 0
    assert '"n": 6' in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    assert main(["params", "show", "--params", str(bad)]) == 2
    assert "nope" in capsys.readouterr().err
