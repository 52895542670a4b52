"""``syncpoint.JsonlSink`` in process: what it does to a file on open, on append and on read. Its behaviour
under ``kill -9`` is tested with real subprocesses in tests/crash/test_jsonl_sink.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import syncpoint


def test_open_cuts_the_file_back_to_the_committed_length_and_append_returns_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "out.jsonl"  # missing directories are created
    with syncpoint.JsonlSink(path) as sink:
        first = sink.append([{"n": 1}, {"n": 2, "text": "ü"}])
        assert first == path.stat().st_size == sink.length
    with open(path, "ab") as late:  # a page appended after the last commit, then a crash
        late.write(b'{"n": "uncommitted"}\n{"n": "torn')
    with syncpoint.JsonlSink(path, first) as sink:
        assert path.stat().st_size == first == sink.length
        assert sink.append([]) == first  # nothing to write: nothing written
        second = sink.append([{"n": 3}])
    assert [json.loads(line) for line in path.read_bytes().splitlines()] == [{"n": 1}, {"n": 2, "text": "ü"},
                                                                             {"n": 3}]
    assert second == path.stat().st_size and '"ü"' in path.read_text(encoding="utf-8")  # UTF-8, not \\u00fc


def test_committed_none_adopts_what_is_there_and_zero_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"kept": true}\n')
    with syncpoint.JsonlSink(path, None) as sink:
        assert sink.length == 15
        sink.append([{"n": 1}])
    assert path.read_bytes() == b'{"kept": true}\n{"n": 1}\n'
    with syncpoint.JsonlSink(path, 0) as sink:
        assert sink.length == 0 and path.stat().st_size == 0


def test_a_file_shorter_than_committed_is_corrupt_state_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n": 1}\n')
    with pytest.raises(syncpoint.CorruptState, match=r"has 9 bytes but the checkpoint recorded 50"):
        syncpoint.JsonlSink(path, 50).open()
    with pytest.raises(syncpoint.CorruptState, match=r"has 9 bytes but the checkpoint recorded 50"):
        syncpoint.JsonlSink(path, 50).read()
    assert path.read_bytes() == b'{"n": 1}\n'


def test_a_missing_file_the_checkpoint_counts_bytes_of_is_corrupt_state_and_nothing_is_created(
        tmp_path: Path) -> None:
    path = tmp_path / "gone" / "out.jsonl"
    with pytest.raises(syncpoint.CorruptState, match=r"has 0 bytes but the checkpoint recorded 50"):
        syncpoint.JsonlSink(path, 50).open()
    assert not path.parent.exists()  # neither the file nor its directory was made


def test_read_gives_the_committed_prefix_and_leaves_a_writers_tail_alone(tmp_path: Path) -> None:
    """A part file of a writer the checkpoint no longer counts: what lies past its committed length is not
    read, and not cut either (that writer may still be appending)."""
    path = tmp_path / "part.1.jsonl"
    content = b'{"n": 1}\n{"n": "late"}\n'
    path.write_bytes(content)
    assert syncpoint.JsonlSink(path, 9).read() == b'{"n": 1}\n'
    assert syncpoint.JsonlSink(path, None).read() == content
    assert path.read_bytes() == content


def test_misuse_is_refused_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="append before open"):
        syncpoint.JsonlSink(tmp_path / "out.jsonl").append([{"n": 1}])
    with pytest.raises(ValueError, match="committed must be a length"):
        syncpoint.JsonlSink(tmp_path / "out.jsonl", -1)


def test_ensure_dir_makes_missing_parents_takes_a_string_and_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    from syncpoint.files import ensure_dir

    ensure_dir(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
    ensure_dir(tmp_path / "a" / "b")  # already there: nothing to do
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        ensure_dir(tmp_path / "f" / "g")
