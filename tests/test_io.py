import pytest

from complexif.io import DataError, atomic_open, iter_jsonl, require_fields, write_jsonl


def test_a_crash_while_writing_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write('{"a": 2}\n')
            raise RuntimeError("crash")
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(DataError, match=r"in.jsonl:3: invalid JSON"):
        list(iter_jsonl(path))


def test_missing_or_mistyped_field_names_file_line_and_field(tmp_path):
    with pytest.raises(DataError, match=r"f.jsonl:4: missing field 'prompt'"):
        require_fields("f.jsonl", 4, {}, {"prompt": str})
    with pytest.raises(DataError, match=r"field 'kwargs' must be list, got dict"):
        require_fields("f.jsonl", 4, {"kwargs": {}}, {"kwargs": list})


def test_outputs_get_normal_permissions_not_mkstemp_private_ones(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = tmp_path / "out.jsonl"
        write_jsonl(path, [{"a": 1}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_stop_signal_inside_uninterrupted_is_held_to_the_end_of_the_block(tmp_path):
    import signal

    from complexif.io import uninterrupted
    from complexif.runtime import StageStopped, stop_signals

    steps = []
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals("t"):
        with pytest.raises(StageStopped, match="stopped by SIGTERM"):
            with uninterrupted():
                signal.raise_signal(signal.SIGTERM)  # its handler runs before this returns
                steps.append("after the signal")
            steps.append("after the block")
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGTERM) is before  # the stage's handler is gone again


def test_stop_handlers_leave_an_ignored_signal_ignored():
    import signal

    from complexif.runtime import stop_signals

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with stop_signals("t"):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGHUP, old)
