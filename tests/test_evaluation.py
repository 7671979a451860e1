"""The evaluation library: predictions JSONL, resume, sharding, metrics through the harness,
missing/failed images, tables, plots, reference rows and the comparison table."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest
from eval_helpers import (
    IntensityScorer,
    SharpnessScorer,
    intensity_score,
    level_probs,
    make_blur_dataset,
    make_intensity_images,
)
from scipy import stats

from deqa.evaluation import (
    DatasetResult,
    EvalSet,
    Prediction,
    PredictionWriter,
    ProcessInfo,
    evaluate_dataset,
    finalize_dataset,
    format_comparison,
    load_references,
    read_predictions,
    score_missing,
    shard,
    write_tables,
)
from deqa.evaluation.predictions import merge_prediction_files
from deqa.evaluation.references import REFERENCE_COLUMNS, ReferenceResult, default_reference_path
from deqa.evaluation.runner import distribution_gaps
from deqa.jsonl import cut_torn_tail
from deqa.metrics import gaussian_js, gaussian_kl, gaussian_w2
from deqa.results import ScoreFailure, ScoreResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval_set(name, images, mos, root, std=None) -> EvalSet:
    mos = np.asarray(mos, dtype=np.float64)
    return EvalSet(
        name=name,
        title=name.upper(),
        split="test",
        images=list(images),
        mos=mos,
        mos_norm=1.0 + 4.0 * mos / 100.0,
        std_norm=None if std is None else np.asarray(std, dtype=np.float64) * 4.0 / 100.0,
        image_root=root,
    )


@pytest.fixture(scope="module")
def blur_set(tmp_path_factory):
    """24 crops of a real photo, blurred progressively; labels on a 0-100 scale with std."""
    root = tmp_path_factory.mktemp("blur")
    images, labels = make_blur_dataset(root)
    with labels.open() as f:
        rows = list(csv.DictReader(f))
    return _eval_set(
        "blur",
        [r["image"] for r in rows],
        [float(r["mos"]) for r in rows],
        images,
        std=[float(r["std"]) for r in rows],
    )


# --------------------------------------------------------------------------- predictions file
def test_prediction_round_trip_and_later_line_wins(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path) as w:
        w.write(
            [
                Prediction("a.png", error="cannot decode"),
                Prediction("b.png", 3.5, 0.4, {"bad": 0.1, "poor": 0.9}),
            ]
        )
        w.write([Prediction("a.png", 2.0)])
    preds = read_predictions(path)
    assert preds["a.png"] == Prediction("a.png", 2.0) and preds["a.png"].ok
    assert preds["b.png"].probs == {"bad": 0.1, "poor": 0.9} and preds["b.png"].std == 0.4
    assert Prediction.from_result("x", ScoreFailure("x", "boom")) == Prediction("x", error="boom")
    res = ScoreResult("x", 4.0, 0.75, "good", "m", std=0.5, probs={"good": 1.0})
    assert Prediction.from_result("x", res) == Prediction("x", 4.0, 0.5, {"good": 1.0})


def test_torn_last_line_is_dropped_and_repaired(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path) as w:
        w.write([Prediction("a", 1.5), Prediction("b", 2.5)])
    text = path.read_text()
    path.write_text(text + '{"image": "c", "sco')  # the process died mid-write
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert set(read_predictions(path)) == {"a", "b"}
    with PredictionWriter(path) as w:  # opening for append cuts the torn line first
        w.write([Prediction("c", 3.5)])
    assert path.read_text() == text + json.dumps(Prediction("c", 3.5).to_json()) + "\n"
    assert cut_torn_tail(path) == 0


@pytest.mark.parametrize(
    "line, match",
    [
        ("not json", r"p.jsonl line 2: not valid JSON"),
        ('{"image": "x"}', r"line 2: a line needs a 'score' or an 'error'"),
        ('{"image": "x", "score": "high"}', r"line 2: score must be a finite number"),
        ('{"image": "x", "score": 1, "extra": 2}', r"line 2: unknown key"),
    ],
)
def test_bad_prediction_lines_are_named(tmp_path, line, match):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(Prediction("a", 1.0).to_json()) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=match):
        read_predictions(path)


def test_merge_prediction_files_keeps_first_success_and_deletes_shards(tmp_path):
    main, s0, s1 = tmp_path / "main.jsonl", tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"
    with PredictionWriter(main) as w:
        w.write([Prediction("a", 1.0), Prediction("b", error="io")])
    with PredictionWriter(s0) as w:
        w.write([Prediction("a", 9.0), Prediction("b", 2.0)])  # a already done; b now succeeded
    with PredictionWriter(s1) as w:
        w.write([Prediction("c", 3.0)])
    assert merge_prediction_files(main, [s0, s1]) == 2
    preds = read_predictions(main)
    assert {k: p.score for k, p in preds.items()} == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert not s0.exists() and not s1.exists()


# --------------------------------------------------------------------------- sharding
def test_shard_is_a_strided_partition():
    items = list(range(11))
    shares = [shard(items, r, 3) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shares, [])) == items
    with pytest.raises(ValueError, match="rank 3 of world size 3"):
        shard(items, 3, 3)
    with pytest.raises(ValueError):
        ProcessInfo(rank=2, world_size=2)


def test_two_fake_ranks_give_the_single_process_result(tmp_path, blur_set):
    single = evaluate_dataset(
        SharpnessScorer(), blur_set, tmp_path / "single", bootstrap=0, plots=False
    )
    folder = tmp_path / "sharded"
    # Each rank scores its share into its own file (in a real job concurrently, here in turn) ...
    for rank in (0, 1):
        stats_r = score_missing(SharpnessScorer(), blur_set, folder, proc=ProcessInfo(rank, 2))
        assert stats_r.n_scored_now == len(shard(range(len(blur_set)), rank, 2))
        assert (folder / f"predictions.rank{rank}.jsonl").is_file()
    # ... then the main process merges them.
    sharded = finalize_dataset(
        blur_set, folder, model_id="test-sharpness", bootstrap=0, plots=False
    )
    assert not list(folder.glob("predictions.rank*.jsonl"))
    assert read_predictions(folder / "predictions.jsonl") == read_predictions(
        tmp_path / "single" / "predictions.jsonl"
    )
    assert sharded.metrics == single.metrics and sharded.n_scored == len(blur_set)


# --------------------------------------------------------------------------- metrics through the harness
def test_harness_metrics_match_hand_computations(tmp_path):
    # Five flat images whose predictions are known exactly: 1.5, 2, 3, 4, 4.5 (up to the 8-bit grey
    # level); MOS ranks (2, 1, 4, 3, 5) -> SRCC 0.8, KRCC 0.6 (2 of 10 pairs discordant).
    targets = [1.5, 2.0, 3.0, 4.0, 4.5]
    names = make_intensity_images(tmp_path / "img", targets)
    mos = [30.0, 20.0, 60.0, 50.0, 90.0]
    eval_set = _eval_set("flat", names, mos, tmp_path / "img")
    res = evaluate_dataset(IntensityScorer(), eval_set, tmp_path / "out", bootstrap=0, plots=False)
    m = res.metrics
    assert m.n == 5 and res.n_scored == 5 and res.n_missing == 0 and res.n_failed == 0
    assert m.srcc == pytest.approx(0.8, abs=1e-12)
    assert m.krcc == pytest.approx(0.6, abs=1e-12)
    x = np.array([intensity_score(t) for t in targets])
    y = 1.0 + 4.0 * np.array(mos) / 100.0  # the harness correlates against MOS on [1, 5]
    dx, dy = x - x.mean(), y - y.mean()
    assert m.plcc == pytest.approx(float(dx @ dy / math.sqrt((dx @ dx) * (dy @ dy))), abs=1e-12)
    preds = read_predictions(tmp_path / "out" / "predictions.jsonl")
    assert [preds[n].score for n in names] == pytest.approx(list(x), abs=1e-12)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["metrics"]["srcc"] == pytest.approx(0.8) and saved["n_scored"] == 5


def test_lower_better_labels_correlate_positively(tmp_path):
    # The harness works on MOS mapped to [1, 5] higher-better, so DMOS data sets give positive SRCC.
    names = make_intensity_images(tmp_path / "img", [1.5, 2.5, 3.5, 4.5])
    dmos = np.array([80.0, 60.0, 40.0, 10.0])
    eval_set = EvalSet(
        "d", "D", "test", names, dmos, 1.0 + 4.0 * (100 - dmos) / 100, None, tmp_path / "img"
    )
    res = evaluate_dataset(IntensityScorer(), eval_set, tmp_path / "out", bootstrap=0, plots=False)
    assert res.metrics.srcc == pytest.approx(1.0)


def test_sharpness_scorer_ranks_the_blur_series(tmp_path, blur_set):
    res = evaluate_dataset(
        SharpnessScorer(), blur_set, tmp_path / "out", bootstrap=200, plots=True, seed=1
    )
    m = res.metrics
    assert m.srcc > 0.8 and m.plcc_fitted >= m.plcc - 1e-9
    preds = read_predictions(tmp_path / "out" / "predictions.jsonl")
    x = np.array([preds[i].score for i in blur_set.images])
    assert m.srcc == pytest.approx(stats.spearmanr(x, blur_set.mos).statistic, abs=1e-12)
    assert set(res.cis) == {"srcc", "plcc_fitted", "plcc"}
    for name, ci in res.cis.items():
        assert ci.low <= ci.high and ci.n_resamples == 200, name
    for kind in ("scatter", "histogram"):
        png = (tmp_path / "out" / f"{kind}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert res.n_gaps == len(blur_set) and set(res.gaps) >= {
        "kl_gauss",
        "js_gauss",
        "js_gauss_deqa",
        "w2_gauss",
    }


def test_distribution_gaps_by_hand():
    # Label N(3, 0.5) and N(4, 0) (std 0: excluded) against predictions (3.2, 0.6) and (2, 1).
    preds = [Prediction("a", 3.2, 0.6), Prediction("b", 2.0, 1.0)]
    gaps, n = distribution_gaps(preds, np.array([3.0, 4.0]), np.array([0.5, 0.0]))
    assert n == 1
    assert gaps["kl_gauss"] == pytest.approx(math.log(0.6 / 0.5) + (0.25 + 0.04) / (2 * 0.36) - 0.5)
    assert gaps["w2_gauss"] == pytest.approx(math.hypot(0.2, 0.1))
    assert gaps["js_gauss"] == pytest.approx(float(gaussian_js(3.0, 0.5, 3.2, 0.6)))
    assert "js_levels" not in gaps  # no level probabilities in these predictions
    assert distribution_gaps(preds, np.array([3.0, 4.0]), None) == ({}, 0)
    assert float(gaussian_kl(3.0, 0.5, 3.2, 0.6)) == pytest.approx(gaps["kl_gauss"])
    assert float(gaussian_w2(3.0, 0.5, 3.2, 0.6)) == pytest.approx(gaps["w2_gauss"])


# --------------------------------------------------------------------------- resume, missing, failed
def test_interrupted_run_resumes_to_the_same_result(tmp_path, blur_set):
    full = evaluate_dataset(
        SharpnessScorer(), blur_set, tmp_path / "full", bootstrap=100, plots=False
    )
    folder = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        evaluate_dataset(
            SharpnessScorer(fail_after=10), blur_set, folder, bootstrap=100, plots=False
        )
    partial = read_predictions(folder / "predictions.jsonl")
    assert 0 < len(partial) < len(blur_set)  # what was scored before the crash is on disk
    # Tear the last line as a crash mid-write would, then resume with a healthy scorer.
    text = (folder / "predictions.jsonl").read_text()
    (folder / "predictions.jsonl").write_text(text[: len(text) - 7])
    resumed_scorer = SharpnessScorer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        resumed = evaluate_dataset(resumed_scorer, blur_set, folder, bootstrap=100, plots=False)
    assert resumed_scorer.seen == len(blur_set) - (len(partial) - 1)  # only the rest was scored
    assert resumed.metrics == full.metrics and resumed.cis == full.cis
    assert read_predictions(folder / "predictions.jsonl") == read_predictions(
        tmp_path / "full" / "predictions.jsonl"
    )


def test_missing_and_undecodable_images_are_counted_and_named(tmp_path):
    names = make_intensity_images(tmp_path / "img", [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    (tmp_path / "img" / names[1]).unlink()
    (tmp_path / "img" / names[2]).unlink()
    (tmp_path / "img" / names[3]).write_bytes(b"this is not a png")
    eval_set = _eval_set("flat", names, [10, 20, 30, 40, 50, 60, 70], tmp_path / "img")
    messages = []
    res = evaluate_dataset(
        IntensityScorer(), eval_set, tmp_path / "out", bootstrap=0, plots=False, log=messages.append
    )
    assert res.n_missing == 2 and res.missing_examples == [names[1], names[2]]
    assert res.n_failed == 1 and res.failed_examples[0].startswith(names[3] + ": ")
    assert res.n_scored == 4 and res.metrics.n == 4 and res.metrics.srcc == pytest.approx(1.0)
    assert any("2 of 7 images not found" in m and names[1] in m for m in messages)
    assert any("1 images could not be scored" in m for m in messages)
    # The failed image is retried on the next run (it may have been fixed meanwhile).
    make_intensity_images(tmp_path / "fix", [3.0])
    (tmp_path / "fix" / "flat_00.png").rename(tmp_path / "img" / names[3])
    again = evaluate_dataset(
        IntensityScorer(), eval_set, tmp_path / "out", bootstrap=0, plots=False
    )
    assert again.n_failed == 0 and again.n_scored == 5


def test_too_few_images_is_reported_not_raised(tmp_path):
    names = make_intensity_images(tmp_path / "img", [2.0, 3.0, 4.0])
    (tmp_path / "img" / names[0]).unlink()
    eval_set = _eval_set("tiny", names, [10, 20, 30], tmp_path / "img")
    res = evaluate_dataset(IntensityScorer(), eval_set, tmp_path / "out", bootstrap=0, plots=False)
    assert res.metrics is None and "at least 3" in res.error and not res.ok


# --------------------------------------------------------------------------- tables
def test_tables_md_csv_json(tmp_path, blur_set):
    ok = evaluate_dataset(SharpnessScorer(), blur_set, tmp_path / "blur", bootstrap=50, plots=False)
    bad = DatasetResult(
        "empty",
        "EMPTY",
        "test",
        "test-sharpness",
        n_labels=4,
        n_missing=4,
        error="need at least 3 pairs",
    )
    paths = write_tables([ok, bad], tmp_path, {"model_id": "test-sharpness"}, confidence=0.95)
    md = paths["md"].read_text()
    assert "| Data set | Split | N | SRCC [95% CI] | PLCC, logistic [95% CI] |" in md
    assert (
        f"| BLUR | test | {len(blur_set)} | {ok.metrics.srcc:.4f} [{ok.cis['srcc'].low:.3f}," in md
    )
    assert "| EMPTY | test | 0 | not evaluated: need at least 3 pairs |" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["dataset"] for r in rows] == ["blur", "empty"]
    assert float(rows[0]["srcc"]) == pytest.approx(ok.metrics.srcc) and rows[1]["srcc"] == ""
    assert float(rows[0]["plcc_fitted_low"]) == pytest.approx(ok.cis["plcc_fitted"].low)
    payload = json.loads(paths["json"].read_text())
    assert payload["meta"]["model_id"] == "test-sharpness"
    assert payload["datasets"][0]["metrics"]["fit_kind"] in ("logistic", "linear")
    assert payload["datasets"][1]["metrics"] is None


# --------------------------------------------------------------------------- references
def test_shipped_reference_results_parse_and_cite_a_source():
    refs = load_references(default_reference_path(), check_datasets=False)
    assert len(refs) >= 30
    deqa = [r for r in refs if r.model == "DeQA-Score" and r.dataset == "koniq10k"]
    assert deqa and deqa[0].srcc == pytest.approx(0.944) and deqa[0].plcc == pytest.approx(0.956)
    for r in refs:
        assert r.source.startswith("https://") and r.training_data and r.split == "test"
        assert all(v is None or 0.0 < v <= 1.0 for v in (r.srcc, r.plcc, r.krcc))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda rows: rows[0].__setitem__(4, "1.7"), r"line 2: srcc = 1.7 is not a correlation"),
        (lambda rows: rows[0].__setitem__(9, ""), r"line 2: source is empty"),
        (lambda rows: rows[0].__setitem__(7, "fitted"), r"line 2: plcc_protocol 'fitted'"),
    ],
)
def test_bad_reference_rows_are_named(tmp_path, edit, match):
    rows = [["M", "v", "koniq10k", "test", "0.9", "0.9", "", "raw", "koniq10k", "https://x", ""]]
    edit(rows)
    path = tmp_path / "refs.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([REFERENCE_COLUMNS, *rows])
    with pytest.raises(ValueError, match=match):
        load_references(path, check_datasets=False)
    path.write_text("model,dataset\nM,koniq10k\n")
    with pytest.raises(ValueError, match="missing"):
        load_references(path, check_datasets=False)


def test_comparison_table_lists_references_with_training_data(tmp_path, blur_set):
    res = evaluate_dataset(SharpnessScorer(), blur_set, tmp_path / "o", bootstrap=0, plots=False)
    refs = [
        ReferenceResult(
            "A", "", "blur", "test", 0.9, 0.91, None, "logistic-4", "blur+other", "https://a", ""
        ),
        ReferenceResult(
            "B", "lora", "blur", "test", 0.95, None, None, "raw", "other", "https://b", ""
        ),
        ReferenceResult("C", "", "blur", "train", 0.5, 0.5, None, "raw", "other", "https://c", ""),
    ]
    text = format_comparison([res], refs, training_data="none")
    lines = text.splitlines()
    assert lines[2].startswith(
        f"| BLUR (test) | **this run: test-sharpness** | none | {res.metrics.srcc:.3f} |"
    )
    assert lines[3].startswith("| BLUR (test) | B (lora) | other | 0.950 | - | raw | https://b |")
    assert lines[4].startswith(
        "| BLUR (test) | A | blur+other (seen) | 0.900 | 0.910 | logistic-4 |"
    )
    assert "https://c" not in text  # other split: not comparable


def test_level_probs_helper_is_a_distribution():
    p = level_probs(3.3)
    assert p.sum() == pytest.approx(1.0) and p.argmax() == 2


def test_tables_without_bootstrap_claim_no_ci(tmp_path, blur_set):
    res = evaluate_dataset(SharpnessScorer(), blur_set, tmp_path / "blur", bootstrap=0, plots=False)
    md = write_tables([res], tmp_path, {"model_id": "test-sharpness"}, confidence=0.95)["md"].read_text()
    assert "| Data set | Split | N | SRCC | PLCC, logistic | KRCC |" in md and "CI" not in md


def test_an_image_labelled_twice_is_named_with_its_rows_and_file(tmp_path):
    from deqa.evaluation.datasets import EvalSet

    args = dict(name="mine", title="Mine", split="test", mos=np.ones(3), mos_norm=np.ones(3), std_norm=None,
                image_root=tmp_path, label_path=tmp_path / "labels.csv")
    with pytest.raises(ValueError, match=r"labels.csv: mine: image './a.jpg' appears twice .*rows 1 and 3 .*as 'a.jpg'"):
        EvalSet(images=["a.jpg", "b.jpg", "./a.jpg"], **args)
    assert len(EvalSet(images=["a.jpg", "b.jpg", "sub/a.jpg"], **args)) == 3
