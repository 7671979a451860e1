"""deqa.jsonl: line-numbered reading, torn last lines, per-line flushed appends."""

import json

import pytest

from deqa.jsonl import JsonlWriter, cut_torn_tail, iter_jsonl


def test_lines_are_numbered_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n  \n[2, 3]\r\n"x"')  # CRLF line; last line without newline
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (4, [2, 3]), (5, "x")]


def test_only_newline_splits_lines(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 / U+0085 raw; str.splitlines would cut there.
    rows = [{"input": "a\u2028b.png"}, {"input": "c\x85d\u2029.png"}]
    path = tmp_path / "u.jsonl"
    with JsonlWriter(path) as w:
        for r in rows:
            w.write(r)
    assert [obj for _, obj in iter_jsonl(path)] == rows


def test_invalid_json_names_file_line_and_hint(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"bad.jsonl line 2: not valid JSON \(.* at column \d+\)$"):
        list(iter_jsonl(path))
    with pytest.raises(ValueError, match=r"line 2: not valid JSON .*; delete it$"):
        list(iter_jsonl(path, hint="delete it"))


def test_undecodable_bytes_name_the_file(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe\n')
    with pytest.raises(ValueError, match=r"bin.jsonl: not utf-8 text"):
        list(iter_jsonl(path))


def test_torn_tail_is_an_error_unless_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b"')
    with pytest.raises(ValueError, match="t.jsonl line 2: not valid JSON"):
        list(iter_jsonl(path))
    with pytest.warns(UserWarning, match=r"t.jsonl line 2: ignoring an incomplete last line"):
        assert list(iter_jsonl(path, skip_torn_tail=True)) == [(1, {"a": 1})]
    # Skipping drops an unterminated last line even when it parses: the writer died before "\n".
    path.write_text('{"a": 1}\n{"a": 2}')
    with pytest.warns(UserWarning):
        assert list(iter_jsonl(path, skip_torn_tail=True)) == [(1, {"a": 1})]
    assert path.read_text() == '{"a": 1}\n{"a": 2}'  # reading never changes the file


def test_cut_torn_tail(tmp_path):
    path = tmp_path / "t.jsonl"
    assert cut_torn_tail(path) == 0  # missing file
    path.write_bytes(b"")
    assert cut_torn_tail(path) == 0
    path.write_text('{"a": 1}\n')
    assert cut_torn_tail(path) == 0 and path.read_text() == '{"a": 1}\n'
    long_tail = '{"a": "' + "x" * 200_000  # longer than one scan block
    path.write_text('{"a": 1}\n' + long_tail)
    assert cut_torn_tail(path) == len(long_tail)
    assert path.read_text() == '{"a": 1}\n'
    path.write_text("no newline at all")
    assert cut_torn_tail(path) == 17 and path.read_bytes() == b""


def test_writer_flushes_every_line_and_cuts_a_torn_tail(tmp_path):
    path = tmp_path / "sub" / "w.jsonl"
    with JsonlWriter(path) as w:
        w.write({"n": 1})
        assert path.read_text() == '{"n": 1}\n'  # on disk before close
    with path.open("a") as f:
        f.write('{"n": 2, "x')  # a killed writer
    with JsonlWriter(path) as w:
        w.write({"n": 3, "s": "é"})
    assert (
        path.read_text(encoding="utf-8")
        == '{"n": 1}\n' + json.dumps({"n": 3, "s": "é"}, ensure_ascii=False) + "\n"
    )


def test_writer_on_a_stream_leaves_it_open(tmp_path):
    path = tmp_path / "s.jsonl"
    with path.open("w") as f:
        with JsonlWriter(f) as w:
            w.write([1, 2])
        assert not f.closed
        f.write("[3]\n")
    assert [obj for _, obj in iter_jsonl(path)] == [[1, 2], [3]]
