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


def test_table_is_not_a_file_format(tmp_path):
    with pytest.raises(ValueError, match="table format is for the terminal"):
        open_writer("table", tmp_path / "x.txt")
