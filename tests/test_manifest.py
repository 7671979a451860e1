"""JSONL manifests: round trip, atomic write, and errors that name the file and line."""

import json
import math
import os

import numpy as np
import pytest

from deqa.data.manifest import MANIFEST_FIELDS, ManifestRecord, read_manifest, write_manifest


def records():
    return [
        ManifestRecord(
            "a.jpg",
            77.4,
            4.1,
            [0.0, 0.0, 0.1, 0.7, 0.2],
            std=0.53,
            std_norm=0.53,
            split="train",
            dataset="koniq10k",
            extra={"ref_image": "r.png"},
        ),
        ManifestRecord("dir/ü b.png", 0.3, 2.2, [0.1, 0.6, 0.3, 0.0, 0.0]),
    ]


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "m.jsonl"
    assert write_manifest(path, records()) == 2
    assert os.listdir(tmp_path / "sub") == ["m.jsonl"]  # no temp file left beside it
    back = read_manifest(path)
    assert back == records()
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert list(first)[: len(MANIFEST_FIELDS)] == list(MANIFEST_FIELDS)
    assert json.loads(lines[1])["std"] is None and "extra" not in json.loads(lines[1])


def test_failed_write_keeps_the_old_manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, records())
    before = path.read_bytes()

    def failing():
        yield records()[0]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="went away"):
        write_manifest(path, failing())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.jsonl"]


def test_overwrite_replaces_the_whole_file(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, records())
    write_manifest(path, records()[:1])
    assert len(read_manifest(path)) == 1


def test_blank_lines_are_skipped_and_num_levels_none(tmp_path):
    path = tmp_path / "m.jsonl"
    rec = records()[1].to_json()
    rec3 = dict(rec, probs=[0.2, 0.3, 0.5])
    path.write_text(json.dumps(rec3) + "\n\n" + json.dumps(rec3) + "\n")
    assert len(read_manifest(path, num_levels=None)) == 2
    path.write_text(json.dumps(rec3) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(
        ValueError, match="line 2: 'probs' has 5 entries but earlier records have 3"
    ):
        read_manifest(path, num_levels=None)


def test_write_refuses_non_finite_numbers(tmp_path):
    bad = ManifestRecord("a.jpg", math.nan, 3.0, [0.2] * 5)
    with pytest.raises(ValueError):
        write_manifest(tmp_path / "m.jsonl", [bad])


GOOD = {
    "image": "a.jpg",
    "mos": 3.0,
    "std": None,
    "mos_norm": 3.0,
    "std_norm": None,
    "probs": [0, 0, 1, 0, 0],
    "split": None,
    "dataset": None,
}


@pytest.mark.parametrize(
    "line, pattern",
    [
        ('{"image": "a.jpg", "mos": 3', r"m.jsonl line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "probs"}),
            r"line 2: missing field\(s\) \['probs'\]",
        ),
        (
            json.dumps(dict(GOOD, score=3)),
            r"line 2: unknown field\(s\) \['score'\]; put custom data under 'extra'",
        ),
        (json.dumps(dict(GOOD, probs=[0.5, 0.5])), "line 2: 'probs' has 2 entries, expected 5"),
        (
            json.dumps(dict(GOOD, probs="0,0,1,0,0")),
            "line 2: field 'probs' must be a non-empty list",
        ),
        (
            json.dumps(dict(GOOD, probs=[0, 0, "x", 0, 0])),
            "line 2: 'probs' entry 'x' is not a finite number",
        ),
        (
            '{"image": "a.jpg", "mos": NaN, "mos_norm": 3, "probs": [0,0,1,0,0]}',
            "line 2: field 'mos' = nan is not a finite number",
        ),
        (json.dumps(dict(GOOD, mos_norm=None)), "line 2: field 'mos_norm' is null"),
        (json.dumps(dict(GOOD, image="")), "line 2: field 'image' must be a non-empty string"),
        (json.dumps(dict(GOOD, split=1)), "line 2: field 'split' = 1 must be a string or null"),
        (json.dumps(dict(GOOD, extra=[1])), "line 2: field 'extra' must be an object"),
        (json.dumps(dict(GOOD, mos=True)), "line 2: field 'mos' = True is not a finite number"),
        # A label that is not a distribution trained silently (a NaN KL, a loss of 0, exit 0).
        (json.dumps(dict(GOOD, probs=[-1, 0, 0, 0, 2])), r"line 2: 'probs' \[-1, 0, 0, 0, 2\] is not a probability vector"),
        (json.dumps(dict(GOOD, probs=[0, 0, 0, 0, 0])), "line 2: 'probs' .* sum to 0"),
        (json.dumps(dict(GOOD, probs=[0.5, 0, 0, 0, 0.7])), "line 2: 'probs' .* sum to 1.2"),
        (json.dumps(dict(GOOD, mos_norm=60.0)), r"line 2: field 'mos_norm' = 60.0 is outside the level scale \[1, 5\]"),
        (json.dumps(dict(GOOD, mos_norm=0.5)), "line 2: field 'mos_norm' = 0.5 is outside"),
        (json.dumps(dict(GOOD, std_norm=-1)), r"line 2: field 'std_norm' = -1.0 is outside \[0, 2\]"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, line, pattern):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=pattern):
        read_manifest(path)


def test_labels_of_every_method_pass_the_checks(tmp_path):
    """The checks' edges: deqa's own labels (DeQA-Score's method sums to up to ~1.05), a label at
    the scale's ends with the largest possible spread."""
    from deqa.levels import soft_labels

    mos = np.array([1.0, 1.3, 3.0, 4.7, 5.0])
    for method in ("moment", "gaussian", "deqa", "onehot", "binary"):
        probs = soft_labels(mos, np.full(5, 0.8), method=method)
        path = tmp_path / f"{method}.jsonl"
        path.write_text("".join(json.dumps(dict(GOOD, mos_norm=float(m), std_norm=0.8, probs=p.tolist())) + "\n"
                                for m, p in zip(mos, probs, strict=True)))
        assert len(read_manifest(path)) == 5, method
    path.write_text(json.dumps(dict(GOOD, mos_norm=3.0, std_norm=2.0, probs=[0.5, 0, 0, 0, 0.5])) + "\n")
    assert read_manifest(path)[0].std_norm == 2.0


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")
