"""Result writers (JSONL / CSV / JSON / table) and reading them back for resume."""

import csv
import io
import json
import os

import pytest

from deqa.outputs import format_for_path, format_table, open_writer, read_records
from deqa.results import ScoreFailure, ScoreResult

PROBS = {"bad": 0.1, "poor": 0.2, "fair": 0.4, "good": 0.2, "excellent": 0.1}
A = ScoreResult("a.jpg", 3.0, 0.5, "fair", "m", std=1.0954, probs=PROBS)
B = ScoreFailure("b.jpg", "truncated image data")
C = ScoreResult("c.jpg", 4.5, 0.875, "excellent", "cnn", details={"blur": 4.8, "noise": 4.2})


def test_format_for_path():
    assert [format_for_path(p) for p in ["x.jsonl", "x.NDJSON", "x.csv", "x.json"]] == [
        "jsonl",
        "jsonl",
        "csv",
        "json",
    ]
    with pytest.raises(ValueError, match=r"-o x.txt: cannot tell the format from '.txt'"):
        format_for_path("x.txt")


def test_jsonl_appends_and_reads_back(tmp_path):
    path = tmp_path / "out" / "s.jsonl"
    with open_writer("jsonl", path) as w:
        w.write(A)
        w.write(B)
    with open_writer("jsonl", path) as w:  # a second run appends
        w.write(C)
    rows = read_records(path, "jsonl")
    assert rows == [A.to_dict(), B.to_dict(), C.to_dict()]
    assert rows[0]["probs"] == PROBS and rows[1] == {
        "input": "b.jpg",
        "error": "truncated image data",
    }


def test_half_written_last_line_is_cut(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(A.to_dict()) + "\n" + '{"input": "b.jpg", "sco')
    with pytest.warns(UserWarning, match="s.jsonl line 2: ignoring an incomplete last line"):
        assert [r["input"] for r in read_records(path, "jsonl")] == ["a.jpg"]
    assert path.read_text() == json.dumps(A.to_dict()) + "\n"


def test_corrupt_jsonl_is_an_error_not_a_silent_overwrite(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r"s.jsonl line 1: not valid JSON.*cannot resume"):
        read_records(path, "jsonl")
    path.write_text('{"score": 1}\n')
    with pytest.raises(ValueError, match='no "input"'):
        read_records(path, "jsonl")


def test_csv_columns_from_first_result_failures_wait(tmp_path):
    path = tmp_path / "s.csv"
    with open_writer("csv", path) as w:
        w.write(B)  # before any result: held until the header is known
        w.write(A)
    with open_writer("csv", path) as w:  # resume: reuses the header, no second header line
        w.write(ScoreFailure("d.jpg", "no such file"))
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["input", "score", "score_0_1", "level", "std"] + [
        f"prob_{w}" for w in PROBS
    ] + ["model", "error"]
    assert [r["input"] for r in rows] == ["b.jpg", "a.jpg", "d.jpg"]
    assert rows[0]["error"] == "truncated image data" and rows[0]["score"] == ""
    assert float(rows[1]["prob_fair"]) == 0.4 and float(rows[1]["score"]) == 3.0
    assert [r["input"] for r in read_records(path, "csv")] == ["b.jpg", "a.jpg", "d.jpg"]
    assert "error" not in read_records(path, "csv")[1]


def test_csv_details_columns_and_only_failures(tmp_path):
    buf = io.StringIO()
    with open_writer("csv", stream=buf) as w:
        w.write(C)
    assert (
        buf.getvalue().splitlines()[0]
        == "input,score,score_0_1,level,std,detail_blur,detail_noise,model,error"
    )
    path = tmp_path / "f.csv"
    with open_writer("csv", path) as w:
        w.write(B)
    assert path.read_text().splitlines() == [
        "input,score,score_0_1,level,std,model,error",
        "b.jpg,,,,,,truncated image data",
    ]


def test_json_file_is_always_valid_and_resumes(tmp_path):
    path = tmp_path / "s.json"
    with open_writer("json", path) as w:
        w.write(A)
    with open_writer("json", path) as w:
        w.write(B)
    assert json.loads(path.read_text()) == [A.to_dict(), B.to_dict()]
    assert sorted(os.listdir(tmp_path)) == ["s.json"]  # no temp file left beside it
    path.write_text("[{")
    with pytest.raises(ValueError, match="s.json: not valid JSON"):
        read_records(path, "json")


def test_table_shows_details_std_and_errors():
    table = format_table([A, B, C]).splitlines()
    assert table[0].split() == [
        "input",
        "score",
        "score_0_1",
        "level",
        "std",
        "blur",
        "noise",
        "error",
    ]
    assert table[1].split() == ["a.jpg", "3.0000", "0.5000", "fair", "1.0954"]
    assert table[2].split() == ["b.jpg", "truncated", "image", "data"]
    assert table[3].split() == ["c.jpg", "4.5000", "0.8750", "excellent", "4.8000", "4.2000"]
    assert format_table([C]).splitlines()[0].split() == [
        "input",
        "score",
        "score_0_1",
        "level",
        "blur",
        "noise",
    ]


def test_table_columns_line_up_for_wide_characters_and_rows_stay_one_line():
    rows = [ScoreResult("画像.jpg", 3.0, 0.5, "fair", "m"), ScoreResult("ab.jpg", 4.0, 0.75, "good", "m"),
            ScoreResult("two\nlines.jpg", 2.0, 0.25, "poor", "m")]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and "two\\nlines.jpg" in lines[3]  # the newline shown as \n
    # Each CJK character takes two terminal columns: the score column ends at the same column.
    import unicodedata

    def columns(line):
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)

    ends = {columns(line[: line.index(score) + len(score)]) for line, score in zip(lines[1:], ["3.0000", "4.0000", "2.0000"], strict=True)}
    assert len(ends) == 1


def test_table_is_not_a_file_format(tmp_path):
    with pytest.raises(ValueError, match="table format is for the terminal"):
        open_writer("table", tmp_path / "x.txt")


@pytest.mark.parametrize(
    "name, content, fmt, match",
    [
        ("important.csv", b"name,value\nalpha,1\nbeta,2", "csv", r"important.csv: not a deqa result file"),
        ("notes.csv", b"only one line", "csv", r"notes.csv: not a deqa result file"),
        ("manifest.csv", b"input,mos\na.jpg,3\nb.jpg,4", "csv", r"lacks \['score'"),
        ("latin1.csv", "input,score\nä".encode("latin-1"), "csv", r"latin1.csv: not a deqa result file"),
        ("notes.jsonl", b"only one line", "jsonl", r"notes.jsonl: its last line .* not the start of a deqa result row"),
        ("other.jsonl", b'{"name": "x"}\n{"name": "y"', "jsonl", r"other.jsonl: its last line"),
        ("manifest.jsonl", b'{"input": "a.jpg"}\n{"input": "b', "jsonl", r'manifest.jsonl line 1: not a deqa result row'),
        ("rows.jsonl", b'{"input": "a.jpg", "error": "x"}\nsome trailing note', "jsonl", r"rows.jsonl: its last line"),
        ("list.json", b'[{"input": "a.jpg"}]', "json", r"list.json: not a JSON list of deqa result rows"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_deqa_result_file_is_refused_untouched(tmp_path, name, content, fmt, match):
    # Nothing may be cut off (the "torn last row" repair) before the file is known to be deqa's.
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_records(path, fmt)
    assert path.read_bytes() == content


def test_torn_rows_of_deqa_files_are_still_cut(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"input": "a.jpg", "error": "x"}\n{"inp')  # killed within the first bytes
    with pytest.warns(UserWarning, match="line 2: ignoring an incomplete last line"):
        assert read_records(path, "jsonl") == [{"input": "a.jpg", "error": "x"}]
    assert path.read_text() == '{"input": "a.jpg", "error": "x"}\n'
    path = tmp_path / "s.csv"
    with open_writer("csv", path) as w:
        w.write(A)
    whole = path.read_bytes()
    path.write_bytes(whole + b"c.jpg,4.5,0.8")
    with pytest.warns(UserWarning, match=r"s.csv line 3: ignoring an incomplete last row"):
        assert [r["input"] for r in read_records(path, "csv")] == ["a.jpg"]
    assert path.read_bytes() == whole


def test_csv_header_widens_when_scores_follow_a_failures_only_start(tmp_path):
    # A first run where every input failed writes a header without detail/prob columns; the
    # scores of a resumed run must not lose theirs. The file ends up as one run would write it.
    path = tmp_path / "f.csv"
    with open_writer("csv", path) as w:
        w.write(B)
    with open_writer("csv", path) as w:
        w.write(C)
        w.write(ScoreFailure("d.jpg", "no such file"))
        w.write(ScoreResult("e.jpg", 2.0, 0.25, "poor", "cnn", details={"blur": 1.0, "noise": 2.0}))
    one_run = tmp_path / "one.csv"
    with open_writer("csv", one_run) as w:
        for r in (B, C, ScoreFailure("d.jpg", "no such file")):
            w.write(r)
        w.write(ScoreResult("e.jpg", 2.0, 0.25, "poor", "cnn", details={"blur": 1.0, "noise": 2.0}))
    assert path.read_bytes() == one_run.read_bytes()
    rows = read_records(path, "csv")
    assert rows[1] == {
        "input": "c.jpg", "score": "4.5", "score_0_1": "0.875", "level": "excellent",
        "detail_blur": "4.8", "detail_noise": "4.2", "model": "cnn",
    }  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["f.csv", "one.csv"]  # no temp file left beside it


def test_csv_stream_says_which_columns_it_cannot_add(tmp_path):
    buf = io.StringIO()
    w = open_writer("csv", stream=buf)
    w.write(A)
    with pytest.warns(UserWarning, match=r"columns \['detail_blur', 'detail_noise'\] are missing"):
        w.write(C)
    w.close()
    assert [r["input"] for r in csv.DictReader(io.StringIO(buf.getvalue()))] == ["a.jpg", "c.jpg"]
