"""Offline punkt data: the files NLTK's punkt_tab loader reads, written atomically and once."""

from __future__ import annotations

from pathlib import Path

import nltk
import pytest
from nltk.tokenize.punkt import PunktTokenizer, load_punkt_params
from punkt.data import english

from complexif.constraints import nltk_data


@pytest.fixture
def isolated_nltk_path(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An empty NLTK search path, so only the directory under test can supply punkt."""
    path: list[str] = []
    monkeypatch.setattr(nltk.data, "path", path)
    monkeypatch.setattr(nltk_data, "_prepared", set())
    return path


def test_writes_loadable_punkt_tab(tmp_path: Path, isolated_nltk_path: list[str]) -> None:
    with pytest.raises(LookupError):
        PunktTokenizer("english")  # nothing on the path yet: no download is attempted
    root = nltk_data.ensure_punkt(tmp_path / "data")
    assert isolated_nltk_path[0] == str(root)
    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in lang_dir.iterdir()) == sorted(nltk_data.PUNKT_FILES)

    params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    assert params.abbrev_types == set(english.ABBREV_TYPES)
    assert params.sent_starters == set(english.SENT_STARTERS)
    assert params.collocations == set(english.COLLOCATIONS)
    assert dict(params.ortho_context) == dict(english.ORTHO_CONTEXT)

    tokenizer = PunktTokenizer("english")
    text = "Mr. Smith arrived at 5 p.m. yesterday. He left early! Did he?"
    assert tokenizer.tokenize(text) == [
        "Mr. Smith arrived at 5 p.m. yesterday.",
        "He left early!",
        "Did he?",
    ]


def test_idempotent_and_repairs_damage(tmp_path: Path, isolated_nltk_path: list[str]) -> None:
    root = nltk_data.ensure_punkt(tmp_path)
    target = root / nltk_data.PUNKT_SUBDIR / "sent_starters.txt"
    before = target.stat()
    nltk_data._prepared.clear()
    nltk_data.ensure_punkt(tmp_path)
    after = target.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)  # untouched
    assert isolated_nltk_path.count(str(root)) == 1

    target.write_text("truncated")
    nltk_data._prepared.clear()
    nltk_data.ensure_punkt(tmp_path)
    assert set(target.read_text().split("\n")) - {""} == set(english.SENT_STARTERS)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_default_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(nltk_data.ENV_VAR, str(tmp_path / "env"))
    assert nltk_data.default_data_dir() == tmp_path / "env"
    monkeypatch.delenv(nltk_data.ENV_VAR)
    assert nltk_data.default_data_dir() == Path.home() / ".cache/complexif/nltk_data"


def test_module_entry_point(tmp_path: Path, isolated_nltk_path: list[str], capsys) -> None:
    assert nltk_data.main([str(tmp_path / "cli")]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "cli").resolve())
