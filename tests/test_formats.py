"""Label file readers: every supported layout, detection, overrides and bad files."""

import json

import numpy as np
import pytest

from deqa.data.formats import detect_format, read_labels
from deqa.data.registry import get_dataset, list_datasets

# ---------------------------------------------------------------------------------------------
# Sample files in each layout (shapes taken from the real files of each project)

IQA_CSV = """image,mos,std,split,official_split,c1,c2,c3,c4,c5,n_ratings
a.jpg,77.38,0.527,train,train,0.0,0.0,0.238,0.695,0.067,105
b.jpg,68.73,0.580,test,test,0.0,0.031,0.469,0.490,0.010,96
"""

IQA_CSV_DMOS = """image,ref_image,dmos,split
x/1.bmp,refs/r.bmp,0.06,test
x/2.bmp,refs/r.bmp,0.5,test
"""

PYIQA_KONIQ = """img_name,mos,std,split,c1,c2,c3,c4,c5,c_total
a.jpg,77.38,0.527,0,0.0,0.0,0.238,0.695,0.067,105
b.jpg,68.73,0.580,2,0.0,0.031,0.469,0.490,0.010,96
c.jpg,71.20,0.498,1,0.0,0.0,0.434,0.566,0.0,106
"""

PYIQA_KADID = """ref_name,dist_name,dmos,std
I01.png,I01_01_01.png,4.57,0.496
I01.png,I01_01_02.png,4.33,0.869
"""

PYIQA_PIPAL = """hq_name,dist_name,elo_score
A0001.bmp,A0001_00_00.bmp,1520.0648
A0001.bmp,A0001_00_01.bmp,1437.0798
"""

PYIQA_SPAQ = """Image name,MOS,Brightness,Colorfulness
00001.jpg,48.86,47.43,55.57
00002.jpg,62.5,55.38,67.13
"""

DEQA_TRAIN = [
    {
        "id": "a.jpg->3.2",
        "image": "KONIQ/images/a.jpg",
        "gt_score": 3.2,
        "gt_score_norm": 3.5,
        "level_probs_org": [0.1, 0.2, 0.3, 0.2, 0.1],
        "level_probs": [0.0, 0.5, 0.5, 0.0, 0.0],
        "std": 0.5,
        "std_norm": 0.6,
        "conversations": [
            {"from": "human", "value": "Rate the quality of this image.\n<|image|>"},
            {"from": "gpt", "value": "The quality of the image is good."},
        ],
    },
    {
        "id": "b.jpg->2.0",
        "image": "KONIQ/images/b.jpg",
        "gt_score": 2.0,
        "gt_score_norm": 1.9,
        "std": 0.4,
        "std_norm": 0.5,
    },
]

QALIGN_TRAIN = [
    {
        "id": "10004473376.jpg->77.3836206897",
        "image": "koniq/10004473376.jpg",
        "conversations": [
            {"from": "human", "value": "What is your quality rating for this image?\n<|image|>"},
            {"from": "gpt", "value": "The quality of the image is excellent."},
        ],
    },
    {
        "id": "livec/213.bmp->13.11",
        "image": "livec/213.bmp",
        "conversations": [],
        "gt_score": 13.11,
    },
]

QALIGN_TEST = [
    {"img_path": "livec/t1.bmp", "gt_score": 63.96},
    {"img_path": "livec/t2.bmp", "gt_score": 25.34},
]


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# ---------------------------------------------------------------------------------------------
# Each layout


def test_iqa_csv_with_std_histogram_split_and_extra(tmp_path):
    t = read_labels(write(tmp_path, "labels.csv", IQA_CSV))
    assert t.format == "iqa-csv" and len(t) == 2
    assert t.images == ["a.jpg", "b.jpg"]
    np.testing.assert_allclose(t.mos, [77.38, 68.73])
    np.testing.assert_allclose(t.std, [0.527, 0.580])
    assert t.split == ["train", "test"]
    np.testing.assert_allclose(t.histogram[0], [0.0, 0.0, 0.238, 0.695, 0.067])
    assert t.extra == {"official_split": ["train", "test"], "n_ratings": ["105", "96"]}
    assert t.where(1).endswith("labels.csv line 3 (image 'b.jpg')")


def test_iqa_csv_dmos_layout(tmp_path):
    t = read_labels(write(tmp_path, "labels.csv", IQA_CSV_DMOS))
    assert t.columns["score"] == "dmos" and t.std is None and t.histogram is None
    assert t.extra["ref_image"] == ["refs/r.bmp", "refs/r.bmp"]


def test_pyiqa_koniq_numeric_splits_and_histogram(tmp_path):
    path = write(tmp_path, "meta_info_KonIQ10kDataset.csv", PYIQA_KONIQ)
    assert detect_format(path) == "pyiqa"
    t = read_labels(path)
    assert t.split == ["train", "test", "val"]  # pyiqa's 0/1/2
    assert t.histogram.shape == (3, 5) and t.extra["c_total"] == ["105", "96", "106"]


@pytest.mark.parametrize(
    "content, image, score, n_extra",
    [
        (PYIQA_KADID, "I01_01_01.png", "dmos", 1),
        (PYIQA_PIPAL, "A0001_00_00.bmp", "elo_score", 1),
        (PYIQA_SPAQ, "00001.jpg", "MOS", 2),
    ],
)
def test_pyiqa_layouts(tmp_path, content, image, score, n_extra):
    t = read_labels(write(tmp_path, "meta.csv", content))
    assert t.format == "pyiqa" and t.images[0] == image and t.columns["score"] == score
    assert len(t.extra) == n_extra and t.split is None


def test_deqa_json_train_and_test_entries(tmp_path):
    path = write(tmp_path, "train_koniq.json", DEQA_TRAIN)
    assert detect_format(path) == "deqa-json"
    t = read_labels(path)
    assert t.images == ["KONIQ/images/a.jpg", "KONIQ/images/b.jpg"]
    np.testing.assert_allclose(t.mos, [3.2, 2.0])
    np.testing.assert_allclose(t.std, [0.5, 0.4])
    np.testing.assert_allclose(t.mos_norm, [3.5, 1.9])
    np.testing.assert_allclose(t.std_norm, [0.6, 0.5])
    assert t.extra["id"] == ["a.jpg->3.2", "b.jpg->2.0"] and t.where(1).endswith(
        "entry 1 (image 'KONIQ/images/b.jpg')"
    )


def test_qalign_json_score_from_id_or_gt_score(tmp_path):
    path = write(tmp_path, "train_koniq.json", QALIGN_TRAIN)
    assert detect_format(path) == "qalign-json"
    t = read_labels(path)
    np.testing.assert_allclose(t.mos, [77.3836206897, 13.11])
    assert t.std is None and t.mos_norm is None
    t = read_labels(write(tmp_path, "livec.json", QALIGN_TEST))
    assert t.images == ["livec/t1.bmp", "livec/t2.bmp"]
    np.testing.assert_allclose(t.mos, [63.96, 25.34])


def test_json_split_key(tmp_path):
    entries = [dict(e, split="train") for e in QALIGN_TEST]
    t = read_labels(write(tmp_path, "x.json", entries), split_column="split")
    assert t.split == ["train", "train"]
    with pytest.raises(ValueError, match="entry 0: split key 'fold' missing"):
        read_labels(write(tmp_path, "y.json", QALIGN_TEST), split_column="fold")


def test_format_override_and_column_overrides(tmp_path):
    path = write(tmp_path, "odd.csv", "file,quality,spread\na.png,3.5,0.2\n")
    with pytest.raises(
        ValueError,
        match=r"unknown CSV label layout; columns found: \['file', 'quality', 'spread'\]",
    ):
        read_labels(path)
    t = read_labels(path, image_column="file", score_column="quality", std_column="spread")
    assert t.images == ["a.png"] and t.mos[0] == 3.5 and t.std[0] == 0.2
    # An explicit --format wins over detection: pyiqa reading of an iqa-csv header still works.
    t = read_labels(write(tmp_path, "labels.csv", IQA_CSV), "pyiqa", image_column="image")
    assert t.format == "pyiqa" and t.split == ["train", "test"]


def test_select_keeps_rows_aligned(tmp_path):
    t = read_labels(write(tmp_path, "labels.csv", IQA_CSV)).select([False, True])
    assert t.images == ["b.jpg"] and t.mos.tolist() == [68.73] and t.extra["n_ratings"] == ["96"]
    assert t.histogram.shape == (1, 5) and t.locations == ["line 3"]


@pytest.mark.parametrize(
    "name", ["koniq10k", "spaq", "kadid10k", "livec", "tid2013", "csiq", "pipal", "live", "agiqa3k"]
)
def test_packaged_label_files_autodetect(name):
    spec = get_dataset(name)
    assert detect_format(spec.label_path) == "iqa-csv"
    t = read_labels(spec.label_path)
    assert len(t) == spec.num_rows and t.columns["score"] == spec.score_column
    assert name in list_datasets()


# ---------------------------------------------------------------------------------------------
# Bad files


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("a.csv", "image,mos\na.jpg,\n", r"a.csv line 2: column 'mos' is empty"),
        (
            "a.csv",
            "image,mos\na.jpg,1\nb.jpg,good\n",
            r"a.csv line 3: column 'mos' = 'good' is not a number",
        ),
        ("a.csv", "image,mos,std\na.jpg,1\n", r"a.csv line 2: 2 fields but the header has 3"),
        ("a.csv", "image,mos\n,1\n", r"line 2: column 'image' \(image\) is empty"),
        ("a.csv", "image,mos\n", "no label rows after the header"),
        ("a.csv", "", r"unknown CSV label layout; columns found: \[\]"),
        ("a.json", "{not json", "not valid JSON"),
        ("a.json", '{"image": "a"}', "expected a non-empty JSON list of objects"),
        (
            "a.json",
            '[{"file": "a", "score": 1}]',
            r"unknown JSON label layout; keys found: \['file', 'score'\]",
        ),
        (
            "a.json",
            '[{"image": "a", "id": "a.jpg"}]',
            "entry 0: no 'gt_score' and no '<name>-><score>' id",
        ),
        (
            "a.json",
            '[{"image": "a", "gt_score": "high", "std": 1}]',
            r"entry 0: 'gt_score' = 'high' is not a number",
        ),
        ("a.json", '[{"image": "a", "gt_score": 1}, {"gt_score": 2}]', "entry 1: no image path"),
        ("a.txt", "a.jpg 3.0\n", "cannot tell the label format from the extension '.txt'"),
    ],
)
def test_bad_files_name_file_and_row(tmp_path, name, content, pattern):
    with pytest.raises(ValueError, match=pattern):
        read_labels(write(tmp_path, name, content))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="label file not found"):
        read_labels(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="unknown label format 'xml'"):
        read_labels(write(tmp_path, "a.csv", IQA_CSV), "xml")
    with pytest.raises(ValueError, match=r"std column 'sd' not found; columns: \['image'"):
        read_labels(write(tmp_path, "a.csv", IQA_CSV), std_column="sd")
    with pytest.raises(ValueError, match=r"histogram columns \['h5'\] not found"):
        read_labels(
            write(tmp_path, "a.csv", IQA_CSV), histogram_columns=("c1", "c2", "c3", "c4", "h5")
        )
