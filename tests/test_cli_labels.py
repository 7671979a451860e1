"""deqa-labels end to end: every input format, the registry, options and bad input."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deqa.cli.labels import main
from deqa.cli.main import main as deqa_main
from deqa.data.manifest import read_manifest
from deqa.data.registry import get_dataset

SHARED_KONIQ = Path("/work/shared/data/iqa_labels/koniq10k/labels.csv")
V = np.arange(1.0, 6.0)


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def koniq_manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "koniq.jsonl"
    assert main(["--dataset", "koniq10k", "-o", str(out)]) == 0
    return read_manifest(out)


def test_registry_copy_gives_valid_soft_labels(koniq_manifest):
    recs = koniq_manifest
    assert len(recs) == 10073
    probs = np.array([r.probs for r in recs])
    assert (probs >= 0).all() and np.allclose(probs.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(probs @ V, [r.mos_norm for r in recs], atol=1e-12)
    first = recs[0]
    assert (
        first.image == "10004473376.jpg" and first.dataset == "koniq10k" and first.split == "train"
    )
    assert first.mos_norm == pytest.approx(
        1 + 77.3836206897 / 25
    ) and first.std_norm == pytest.approx(0.527277894494)
    assert first.extra["official_split"] == "train"


def test_prints_label_quality(tmp_path, capsys):
    rc, out, _ = run(
        [
            get_dataset("koniq").label_path,
            "--dataset",
            "koniq10k",
            "-o",
            tmp_path / "x.jsonl",
            "--split",
            "test",
        ],
        capsys,
    )
    assert rc == 0
    assert "wrote 2010 records" in out
    for key in (
        "mean |mean error|",
        "max |mean error|",
        "mean |std error|",
        "valid vectors        100.00%",
        "Gaussian JS gap",
        "JS to histograms",
    ):
        assert key in out


@pytest.mark.skipif(not SHARED_KONIQ.is_file(), reason="shared label folder not present")
def test_shared_koniq_file_matches_registry_copy(tmp_path, capsys, koniq_manifest):
    rc, _, _ = run([SHARED_KONIQ, "--dataset", "koniq10k", "-o", tmp_path / "x.jsonl"], capsys)
    assert rc == 0
    assert read_manifest(tmp_path / "x.jsonl") == koniq_manifest


@pytest.mark.parametrize("method", ["moment", "gaussian", "deqa", "onehot", "binary", "histogram"])
def test_every_method(tmp_path, capsys, method):
    rc, out, _ = run(
        ["--dataset", "koniq", "-o", tmp_path / "m.jsonl", "--split", "test", "--method", method],
        capsys,
    )
    assert rc == 0 and f"method {method}" in out
    assert len(read_manifest(tmp_path / "m.jsonl")) == 2010


# ---------------------------------------------------------------------------------------------
# Each input format (small files built here; scales checked by hand)


def test_iqa_csv_with_explicit_scale(tmp_path, capsys):
    src = tmp_path / "labels.csv"
    src.write_text("image,dmos,split\na.png,0.25,test\nb.png,1.0,train\n")
    rc, out, _ = run(
        [src, "--mos-range", 0, 1, "--lower-better", "-o", tmp_path / "m.jsonl"], capsys
    )
    assert rc == 0 and "lower is better" in out
    a, b = read_manifest(tmp_path / "m.jsonl")
    assert (a.mos_norm, b.mos_norm) == (4.0, 1.0)
    assert a.dataset == "labels" and a.std is None and a.extra == {"std_imputed": True}


def test_pyiqa_csv(tmp_path, capsys):
    src = tmp_path / "meta_info_KADID10kDataset.csv"
    src.write_text(
        "ref_name,dist_name,dmos,std\nI01.png,I01_01_01.png,4.57,0.496\nI01.png,I01_01_05.png,1.1,0.3\n"
    )
    rc, _, _ = run([src, "--dataset", "kadid", "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 0
    recs = read_manifest(tmp_path / "m.jsonl")
    assert [r.image for r in recs] == ["I01_01_01.png", "I01_01_05.png"]
    assert recs[0].mos_norm == pytest.approx(4.57) and recs[0].std_norm == pytest.approx(0.496)
    assert recs[0].extra == {"ref_name": "I01.png"} and recs[0].dataset == "kadid10k"
    assert np.dot(recs[1].probs, V) == pytest.approx(1.1)


def test_deqa_json_needs_no_scale(tmp_path, capsys):
    src = tmp_path / "test_koniq_2k.json"
    src.write_text(
        json.dumps(
            [
                {
                    "id": "a",
                    "image": "KONIQ/a.jpg",
                    "gt_score": 3.1,
                    "gt_score_norm": 3.6,
                    "std": 0.5,
                    "std_norm": 0.62,
                },
                {
                    "id": "b",
                    "image": "KONIQ/b.jpg",
                    "gt_score": 1.5,
                    "gt_score_norm": 1.2,
                    "std": 0.3,
                    "std_norm": 0.37,
                },
            ]
        )
    )
    rc, _, _ = run([src, "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 0
    a, b = read_manifest(tmp_path / "m.jsonl")
    assert (a.mos, a.mos_norm, a.std, a.std_norm) == (3.1, 3.6, 0.5, 0.62)
    assert np.dot(b.probs, V) == pytest.approx(1.2)
    # With --dataset the file's own normalised values still win (DeQA's KonIQ gt_score is the
    # 1-5 rating mean, not the registry's 0-100 MOS); an explicit --mos-range overrides them.
    rc, out, _ = run([src, "--dataset", "koniq10k", "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 0 and "the file's own level-scale values" in out
    assert read_manifest(tmp_path / "m.jsonl")[0].mos_norm == 3.6
    rc, _, _ = run([src, "--mos-range", 1, 5, "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 0 and read_manifest(tmp_path / "m.jsonl")[0].mos_norm == pytest.approx(3.1)


def test_qalign_json_with_split_and_no_std_policy(tmp_path, capsys):
    src = tmp_path / "train_koniq.json"
    src.write_text(
        json.dumps(
            [
                {"id": "a.jpg->75.0", "image": "koniq/a.jpg", "conversations": []},
                {"id": "b.jpg->25.0", "image": "koniq/b.jpg", "conversations": []},
            ]
        )
    )
    rc, out, _ = run(
        [
            src,
            "--format",
            "qalign-json",
            "--mos-range",
            0,
            100,
            "--no-std-policy",
            "binary",
            "-o",
            tmp_path / "m.jsonl",
        ],
        capsys,
    )
    assert rc == 0 and "std imputed          0 rows" in out
    a, b = read_manifest(tmp_path / "m.jsonl")
    assert a.probs == [0.0, 0.0, 0.0, 1.0, 0.0] and b.probs == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_observed_range_and_std_scale(tmp_path, capsys):
    src = tmp_path / "l.csv"
    src.write_text("image,mos,std\na,10,0.5\nb,30,0.5\nc,20,0.5\n")
    rc, _, _ = run(
        [src, "--observed-range", "--std-scale", "1:5", "-o", tmp_path / "m.jsonl"], capsys
    )
    assert rc == 0
    recs = read_manifest(tmp_path / "m.jsonl")
    assert [r.mos_norm for r in recs] == [1.0, 5.0, 3.0] and recs[0].std_norm == 0.5
    rc, _, _ = run(
        [
            src,
            "--mos-range",
            0,
            40,
            "--std-scale",
            "none",
            "--default-std",
            0.25,
            "--no-std-policy",
            "dataset_mean_std",
            "-o",
            tmp_path / "m.jsonl",
        ],
        capsys,
    )
    assert rc == 0 and all(r.std_norm == 0.25 for r in read_manifest(tmp_path / "m.jsonl"))


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2 and a message naming the problem


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--dataset", "konik"], "unknown data set 'konik'; known data sets"),
        ([], "give a label file, or --dataset NAME"),
        (
            ["{csv}"],
            r"score scale is unknown; give a registered data set \(--dataset\) or the declared range",
        ),
        (
            ["{csv}", "--mos-range", "0", "50"],
            r"line 3 \(image 'b'\): score = 80.0 is outside the declared range \[0, 50\]",
        ),
        (
            ["{csv}", "--mos-range", "0", "100", "--no-std-policy", "error"],
            r"line 2 \(image 'a'\): no std given",
        ),
        (["{csv}", "--mos-range", "0", "100", "--split", "train"], "no split column"),
        (
            ["{csv}", "--mos-range", "0", "100", "--std-scale", "1-5"],
            "--std-scale must be 'mos', 'none' or 'LO:HI'",
        ),
        (
            ["{csv}", "--mos-range", "0", "100", "--observed-range"],
            "either --mos-range or --observed-range",
        ),
        (
            ["{csv}", "--mos-range", "0", "100", "--method", "histogram"],
            "needs rating-histogram columns",
        ),
        (["{dir}/missing.csv", "--mos-range", "0", "1"], "label file not found"),
    ],
)
def test_bad_input_exits_1_with_message(tmp_path, capsys, argv, pattern):
    src = tmp_path / "l.csv"
    src.write_text("image,mos\na,20\nb,80\n")
    argv = [a.format(csv=src, dir=tmp_path) for a in argv] + ["-o", str(tmp_path / "m.jsonl")]
    rc, _, err = run(argv, capsys)
    assert rc == 1
    assert err.startswith("deqa-labels: error: ")
    assert re.search(pattern, err), err
    assert not (tmp_path / "m.jsonl").exists()


def test_split_filter_with_no_match(tmp_path, capsys):
    rc, _, err = run(["--dataset", "livec", "--split", "val", "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 1 and "--split val: no row has 'val' in its split column; values present: ['test', 'train']" in err


def test_umbrella_command_and_module_entry_point(tmp_path, capsys):
    assert deqa_main(["labels", "--dataset", "csiq", "-o", str(tmp_path / "a.jsonl")]) == 0
    assert len(read_manifest(tmp_path / "a.jsonl")) == 866
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deqa.cli.labels",
            "--dataset",
            "live",
            "-o",
            str(tmp_path / "b.jsonl"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 779 records" in proc.stdout


def test_duplicate_image_rows_are_refused_naming_both(tmp_path, capsys):
    src = tmp_path / "dup.csv"
    src.write_text("image,mos,std,split\na.jpg,3,0.5,train\nb.jpg,2,0.5,train\n./a.jpg,2,0.5,test\n")
    rc, _, err = run([src, "--mos-range", 1, 5, "-o", tmp_path / "d.jsonl"], capsys)
    assert rc == 1 and "line 4 (image './a.jpg'): the image already has a label row (line 2)" in err
    assert not (tmp_path / "d.jsonl").exists()
    # one split of it is fine
    rc, _, _ = run([src, "--mos-range", 1, 5, "--split", "test", "-o", tmp_path / "d.jsonl"], capsys)
    assert rc == 0 and [r.image for r in read_manifest(tmp_path / "d.jsonl")] == ["./a.jpg"]


def test_split_names_what_exists_and_selects_on_other_columns(tmp_path, capsys):
    src = tmp_path / "l.csv"
    src.write_text("image,mos,split,official_split\na,1,training,train\nb,2,validation,val\nc,3,test,test\n")
    base = [src, "--mos-range", 1, 5, "-o", tmp_path / "m.jsonl"]
    rc, _, err = run([*base, "--split", "train"], capsys)
    assert rc == 1 and "no row has 'train' in its split column; values present: ['test', 'training', 'validation']" in err
    rc, _, _ = run([*base, "--split", "official_split=train,official_split=val"], capsys)
    assert rc == 0 and [r.image for r in read_manifest(tmp_path / "m.jsonl")] == ["a", "b"]
    rc, _, _ = run([*base, "--split", "split=test"], capsys)  # the split column by name, too
    assert rc == 0 and [r.image for r in read_manifest(tmp_path / "m.jsonl")] == ["c"]
    rc, _, err = run([*base, "--split", "offical_split=test"], capsys)
    assert rc == 1 and "no column 'offical_split', or select on one of ['official_split']" in err
    rc, _, err = run([*base, "--split", "official_split=x"], capsys)
    assert rc == 1 and "no row has 'x' in its column 'official_split'; values present: ['test', 'train', 'val']" in err


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--mos-range", "5", "1"], r"score range \[5, 1\] \(--mos-range\): LO must be below HI"),
        (["--mos-range", "1", "5", "--std-scale", "5:1"], r"std scale \[5, 1\] .*LO must be below HI"),
        (["--mos-range", "1", "5", "--density", "interval"], "--density interval is an option of --method deqa only"),
    ],
)
def test_option_mistakes_are_named(tmp_path, capsys, extra, pattern):
    src = tmp_path / "l.csv"
    src.write_text("image,mos\na,2\nb,4\n")
    rc, _, err = run([src, *extra, "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 1 and re.search(pattern, err), err


def test_default_std_must_be_a_finite_non_negative_number(tmp_path, capsys):
    for bad in ("nan", "-0.5", "inf"):
        with pytest.raises(SystemExit) as exit_:
            main(["--dataset", "csiq", "--default-std", bad, "-o", str(tmp_path / "m.jsonl")])
        assert exit_.value.code == 1
        assert f"argument --default-std: must be a finite number >= 0, got {bad}" in capsys.readouterr().err


def test_range_error_points_at_where_the_range_was_declared(tmp_path, capsys):
    src = tmp_path / "l.csv"
    src.write_text("image,mos\na,20\nb,180\n")
    rc, _, err = run([src, "--dataset", "livec", "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 1 and "fix the row or the range (mos_range of data set 'livec' in the registry; --mos-range LO HI overrides it)" in err


def test_deqa_json_without_std_norm_maps_its_raw_std(tmp_path, capsys):
    # gt_score_norm = 1 + 4 (gt_score - 0) / 100: the std maps by the same slope, 0.04.
    rows = [{"image": f"{k}.jpg", "gt_score": g, "gt_score_norm": 1 + 0.04 * g, "std": s}
            for k, g, s in (("a", 20.0, 12.0), ("b", 50.0, 15.0), ("c", 90.0, 5.0))]
    src = tmp_path / "d.json"
    src.write_text(json.dumps(rows))
    rc, out, _ = run([src, "-o", tmp_path / "m.jsonl"], capsys)
    recs = read_manifest(tmp_path / "m.jsonl")
    assert rc == 0 and [r.std_norm for r in recs] == pytest.approx([0.48, 0.6, 0.2]) and "std imputed          0 rows" in out
    # Rounded to 3 decimals (as files are): still the same map.
    for r in rows:
        r["gt_score_norm"] = round(1 + 0.0381 * r["gt_score"], 3)
    src.write_text(json.dumps(rows))
    rc, out, _ = run([src, "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 0 and [r.std_norm for r in read_manifest(tmp_path / "m.jsonl")] == pytest.approx([0.4572, 0.5715, 0.1905], abs=2e-4)
    # A map that is not affine says nothing about the std: imputed, and a warning says why.
    rows[1]["gt_score_norm"] = 2.5
    src.write_text(json.dumps(rows))
    rc, out, err = run([src, "-o", tmp_path / "m.jsonl"], capsys)
    assert rc == 0 and "std imputed          3 rows" in out
    assert re.search(r"deqa-labels: warning: .*d.json: its std is not used .* not an affine map", err)


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_report_into_a_closed_pipe_is_quiet(tmp_path, unbuffered):
    # `| true` reads nothing and exits at once: every write of the report meets a closed pipe.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    cmd = f"{sys.executable} -m deqa.cli.labels --dataset csiq -o {tmp_path / 'c.jsonl'} | true; echo rc=${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout == "rc=0\n" and proc.stderr == ""
    assert len(read_manifest(tmp_path / "c.jsonl")) == 866


def test_registry_default_std_is_used_unless_the_command_line_gives_one(tmp_path, capsys, monkeypatch):
    import dataclasses

    import deqa.cli.labels as cli

    spec = dataclasses.replace(get_dataset("csiq"), default_std=0.3)
    monkeypatch.setattr(cli, "get_dataset", lambda name: spec)
    out = tmp_path / "m.jsonl"
    assert run(["--dataset", "csiq", "--no-std-policy", "dataset_mean_std", "-o", out], capsys)[0] == 0
    assert {r.std_norm for r in read_manifest(out)} == {0.3}
    assert run(["--dataset", "csiq", "--no-std-policy", "dataset_mean_std", "--default-std", 0.5, "-o", out], capsys)[0] == 0
    assert {r.std_norm for r in read_manifest(out)} == {0.5}
