"""``deqa-eval`` end to end on a synthetic data set registered through a registry YAML, plus the
registry-backed loading of every shipped label file for evaluation."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from eval_helpers import SharpnessScorer, make_blur_dataset
from scipy import stats

import deqa.load
from deqa.cli import eval as eval_cli
from deqa.data.registry import get_dataset, list_datasets
from deqa.evaluation import load_eval_set, load_image_roots, load_references, read_predictions
from deqa.evaluation.references import REFERENCE_COLUMNS, default_reference_path

REGISTRY = """\
blurmini:
  title: Blur mini
  aliases: [blur-mini]
  labels: labels.csv
  num_rows: 24
  image_column: image
  score_column: mos
  mos_range: [0, 100]
  std_column: std
  split_column: split
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    images, labels = make_blur_dataset(root)
    (root / "datasets.yaml").write_text(REGISTRY)
    refs = root / "refs.csv"
    with refs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(REFERENCE_COLUMNS)
        w.writerow(
            [
                "PeerNet",
                "large",
                "blurmini",
                "test",
                "0.990",
                "0.985",
                "",
                "logistic-4",
                "blurmini",
                "https://example.org/peer",
                "",
            ]
        )
        w.writerow(
            [
                "OtherNet",
                "",
                "blurmini",
                "test",
                "0.700",
                "",
                "",
                "unspecified",
                "koniq10k",
                "https://example.org/other",
                "",
            ]
        )
    with labels.open() as f:
        rows = list(csv.DictReader(f))
    return {
        "root": root,
        "images": images,
        "registry": root / "datasets.yaml",
        "refs": refs,
        "rows": rows,
    }


class _Loaded(list):
    """(model, kwargs, scorer) of every load; ``fail_after`` makes the next scorers crash."""

    fail_after: int | None = None


@pytest.fixture
def scorers(monkeypatch):
    """deqa-eval loads models through deqa.load.load_scorer: hand it real test scorers."""
    made = _Loaded()

    def fake_load_scorer(model=None, **kwargs):
        scorer = SharpnessScorer(fail_after=made.fail_after)
        made.append((model, kwargs, scorer))
        return scorer

    monkeypatch.setattr(deqa.load, "load_scorer", fake_load_scorer)
    return made


def _argv(mini, out, *extra):
    return [
        "--model", "sharpness", "--registry", str(mini["registry"]), "--datasets", "blur-mini",
        "--image-root", str(mini["images"]), "--output", str(out), "--bootstrap", "200",
        "--num-workers", "0", "--no-progress", *extra,
    ]  # fmt: skip


def test_end_to_end_tables_plots_and_compare(mini, scorers, tmp_path, capsys):
    out = tmp_path / "run"
    rc = eval_cli.main(
        _argv(
            mini,
            out,
            "--compare",
            "--references",
            str(mini["refs"]),
            "--model-arg",
            "dtype=bfloat16",
        )
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert scorers[0][0] == "sharpness" and scorers[0][1] == {"dtype": "bfloat16"}
    for name in ("results.md", "results.csv", "results.json", "compare.md", "run.json"):
        assert (out / name).is_file(), name
    for name in ("predictions.jsonl", "metrics.json", "scatter.png", "histogram.png"):
        assert (out / "blurmini" / name).is_file(), name

    # Only the test split, and the metrics agree with a hand computation from the predictions file.
    test_rows = [r for r in mini["rows"] if r["split"] == "test"]
    preds = read_predictions(out / "blurmini" / "predictions.jsonl")
    assert set(preds) == {r["image"] for r in test_rows}
    x = np.array([preds[r["image"]].score for r in test_rows])
    y = 1 + 4 * np.array([float(r["mos"]) for r in test_rows]) / 100
    (row,) = list(csv.DictReader((out / "results.csv").open()))
    assert int(row["n"]) == len(test_rows) == 16
    assert float(row["srcc"]) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert float(row["krcc"]) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert float(row["plcc"]) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert float(row["srcc_low"]) <= float(row["srcc"]) <= float(row["srcc_high"])
    assert float(row["js_gauss"]) > 0 and float(row["js_levels"]) > 0 and int(row["n_gaps"]) == 16

    # The table and the comparison are printed; the comparison states each model's training data.
    assert "| Blur mini | test | 16 |" in captured.out
    assert "**this run: test-sharpness** | none (hand-written sharpness measure) |" in captured.out
    assert (
        "| PeerNet (large) | blurmini (seen) | 0.990 | 0.985 | logistic-4 | https://example.org/peer |"
        in captured.out
    )
    assert "| OtherNet | koniq10k | 0.700 | - | unspecified |" in captured.out
    meta = json.loads((out / "run.json").read_text())
    assert meta["model"] == "sharpness" and meta["config"]["datasets"] == ["blur-mini"]


def test_interrupted_cli_run_resumes_to_the_same_table(mini, scorers, tmp_path, capsys):
    full = tmp_path / "full"
    assert eval_cli.main(_argv(mini, full)) == 0
    out = tmp_path / "resumed"
    scorers.fail_after = 6  # Ctrl-C after 6 images
    assert eval_cli.main(_argv(mini, out)) == 130
    assert "interrupted; the predictions so far are in" in capsys.readouterr().err
    n_before = len(read_predictions(out / "blurmini" / "predictions.jsonl"))
    assert 0 < n_before < 16
    scorers.fail_after = None
    assert eval_cli.main(_argv(mini, out)) == 0
    assert scorers[-1][2].seen == 16 - n_before  # only the rest was scored
    a = json.loads((full / "results.json").read_text())["datasets"][0]
    b = json.loads((out / "results.json").read_text())["datasets"][0]
    assert a["metrics"] == b["metrics"] and a["ci"] == b["ci"] and a["gaps"] == b["gaps"]
    assert (full / "results.csv").read_text() == (out / "results.csv").read_text()


@pytest.mark.parametrize("damage", ["missing", "undecodable"])
def test_images_not_scored_are_reported_and_exit_2(mini, scorers, tmp_path, capsys, damage):
    """Like deqa-score: the rest is evaluated and written, the exit code says some inputs failed."""
    images = tmp_path / "images"
    images.mkdir()
    test_rows = [r for r in mini["rows"] if r["split"] == "test"]
    for r in test_rows[3:]:
        (images / r["image"]).write_bytes((mini["images"] / r["image"]).read_bytes())
    if damage == "undecodable":
        for r in test_rows[:3]:
            (images / r["image"]).write_bytes(b"not a png")
    argv = _argv(mini, tmp_path / "out")
    argv[argv.index("--image-root") + 1] = f"blurmini={images}"
    assert eval_cli.main(argv) == 2
    err = capsys.readouterr().err
    if damage == "missing":
        assert f"blurmini: 3 of 16 images not found under {images}" in err
        assert test_rows[0]["image"] in err and "evaluating the rest" in err
    else:
        assert f"blurmini: 3 images could not be scored (first: {test_rows[0]['image']}: " in err
    n_missing, n_failed = (3, 0) if damage == "missing" else (0, 3)
    assert err.rstrip().endswith(
        f"deqa-eval: 3 images could not be scored and are left out of the metrics (blurmini: "
        f"{n_missing} missing, {n_failed} failed of 16; named in each data set's metrics.json)"
    )
    (row,) = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert row["n"] == "13" and row["n_missing"] == str(n_missing) and row["n_failed"] == str(n_failed)
    assert (tmp_path / "out" / "blurmini" / "scatter.png").is_file()  # everything else written


def test_a_data_set_that_cannot_be_evaluated_exits_1(mini, scorers, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for r in [r for r in mini["rows"] if r["split"] == "test"][:2]:
        (images / r["image"]).write_bytes((mini["images"] / r["image"]).read_bytes())
    argv = _argv(mini, tmp_path / "out")
    argv[argv.index("--image-root") + 1] = str(images)
    assert eval_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "deqa-eval: blurmini: not evaluated:" in err and "14 images could not be scored" in err


@pytest.mark.parametrize(
    "change, message",
    [
        (("--datasets", "nosuchset"), "unknown data set 'nosuchset'"),
        (
            ("--split", "holdout"),
            "no row of 'blurmini' has split column 'split' = 'holdout'; values present: ['test', 'train']",
        ),
        (("--split", "official_split=test"), "has no column 'official_split'"),
        (
            ("--image-root", "/does/not/exist"),
            "image folder of 'blurmini' does not exist: /does/not/exist",
        ),
        (("--bootstrap", "1"), "--bootstrap must be 0"),
        (("--model-arg", "novalue"), "--model-arg 'novalue': expected KEY=VALUE"),
    ],
)
def test_bad_arguments_fail_before_scoring(mini, scorers, tmp_path, capsys, change, message):
    argv = _argv(mini, tmp_path / "out")
    if change[0] in argv:
        argv[argv.index(change[0]) + 1] = change[1]
    else:
        argv += list(change)
    assert eval_cli.main(argv) == 1
    assert message in capsys.readouterr().err
    assert not scorers  # no model was loaded


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--bootstrap", "-1", "argument --bootstrap: must be >= 0 (0 = no CIs), got -1"),
        ("--limit", "2", "argument --limit: must be >= 3 (correlations need 3 images), got 2"),
        ("--batch-size", "0", "argument --batch-size: must be >= 1, got 0"),
        ("--num-workers", "two", "argument --num-workers: invalid int value: 'two'"),
        ("--alpha", "0", "argument --alpha: must be > 0, got 0"),
        ("--split", None, "argument --split: expected one argument"),
    ],
)
def test_bad_argument_values_exit_1_like_the_other_commands(
    mini, scorers, tmp_path, capsys, option, value, message
):
    """deqa-eval parses with the shared Parser: exit 1 on a bad argument (2 = some images failed)."""
    argv = _argv(mini, tmp_path / "out") + [option] + ([value] if value is not None else [])
    with pytest.raises(SystemExit) as exc:
        eval_cli.main(argv)
    assert exc.value.code == 1
    assert f"deqa-eval: error: {message}" in capsys.readouterr().err
    assert not scorers


def test_image_root_needs_a_name_with_several_data_sets(mini, scorers, tmp_path, capsys):
    argv = _argv(mini, tmp_path / "out")
    argv[argv.index("--datasets") + 1 : argv.index("--datasets") + 2] = ["blurmini", "koniq"]
    assert eval_cli.main(argv) == 1
    assert "with several data sets, write NAME=DIR" in capsys.readouterr().err
    argv[argv.index("--image-root") + 1] = f"blurmini={mini['images']}"
    assert eval_cli.main(argv) == 1
    assert (
        "no image folder for data set 'koniq10k': pass --image-root koniq10k=DIR"
        in capsys.readouterr().err
    )


def test_output_of_another_model_is_not_mixed_in(mini, scorers, tmp_path, capsys):
    out = tmp_path / "out"
    assert eval_cli.main(_argv(mini, out, "--bootstrap", "0")) == 0
    argv = _argv(mini, out, "--bootstrap", "0")
    argv[argv.index("--model") + 1] = "another"
    assert eval_cli.main(argv) == 1
    folder = next(out.glob("*/source.json")).parent  # the data set's record is what is checked
    assert (
        f"{folder} holds predictions of another model (model: 'sharpness', now 'another'); choose "
        "another --output, or pass --overwrite to discard them" in capsys.readouterr().err
    )
    assert len(scorers) == 1  # refused from the arguments, before loading the model
    assert eval_cli.main(argv + ["--overwrite"]) == 0


def test_output_of_the_builtin_model_is_named_and_refused_before_loading(
    mini, scorers, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = _argv(mini, out, "--bootstrap", "0", "--no-plots")
    del argv[argv.index("--model") : argv.index("--model") + 2]  # the built-in model
    assert eval_cli.main(argv) == 0
    assert eval_cli.main(argv + ["--model", "builtin"]) == 0  # the same model, spelt out
    assert scorers[-1][2].seen == 0  # and its predictions are reused
    assert eval_cli.main(argv + ["--model", "/tmp/rv/tiny-qwen"]) == 1
    assert (
        "holds predictions of another model (model: the built-in model, now '/tmp/rv/tiny-qwen')"
        in capsys.readouterr().err
    )
    assert len(scorers) == 2  # the refused run loaded nothing


def test_model_id_is_still_checked_once_the_model_is_loaded(mini, scorers, tmp_path, capsys):
    out = tmp_path / "out"
    assert eval_cli.main(_argv(mini, out, "--bootstrap", "0", "--no-plots")) == 0
    source = next(out.glob("*/source.json"))
    source.write_text(json.dumps({**json.loads(source.read_text()), "model_id": "sharpness-v0"}))
    assert eval_cli.main(_argv(mini, out, "--bootstrap", "0", "--no-plots")) == 1
    assert "(model_id: 'sharpness-v0', now 'test-sharpness')" in capsys.readouterr().err


def _with_root(argv, root):
    argv = list(argv)
    argv[argv.index("--image-root") + 1] = str(root)
    return argv


def test_predictions_from_another_image_folder_are_not_reused(mini, scorers, tmp_path, capsys):
    """The reviewer's case: the same file names in another folder (another resolution) must be
    scored, not answered with the first folder's predictions."""
    from PIL import Image

    small = tmp_path / "imgs_small"
    small.mkdir()
    for r in mini["rows"]:
        with Image.open(mini["images"] / r["image"]) as im:
            im.resize((48, 48)).save(small / r["image"])
    out = tmp_path / "out"
    argv = _argv(mini, out, "--split", "all", "--bootstrap", "0", "--no-plots")
    assert eval_cli.main(argv) == 0
    first = read_predictions(out / "blurmini" / "predictions.jsonl")
    source = json.loads((out / "blurmini" / "source.json").read_text())
    assert source["image_root"] == str(mini["images"].resolve()) and source["model"] == "sharpness"

    assert eval_cli.main(_with_root(argv, small)) == 1
    err = capsys.readouterr().err
    assert (
        f"{out / 'blurmini'} holds predictions of 'blurmini' scored from the images in "
        f"{mini['images'].resolve()}, not {small.resolve()} (--image-root)" in err
    )
    assert f"Choose another --output for this image folder, or delete {out / 'blurmini'}" in err
    assert len(scorers) == 1  # refused before loading the model
    assert read_predictions(out / "blurmini" / "predictions.jsonl") == first  # untouched

    # Either way out scores the small images.
    other = tmp_path / "out_small"
    assert eval_cli.main(_with_root(argv + ["--output", str(other)], small)) == 0
    assert scorers[-1][2].seen == 24
    small_preds = read_predictions(other / "blurmini" / "predictions.jsonl")
    assert small_preds.keys() == first.keys() and small_preds != first
    shutil.rmtree(out / "blurmini")
    assert eval_cli.main(_with_root(argv, small)) == 0
    assert scorers[-1][2].seen == 24
    assert read_predictions(out / "blurmini" / "predictions.jsonl") == small_preds
    assert eval_cli.main(argv + ["--overwrite"]) == 0  # back to the first folder
    assert read_predictions(out / "blurmini" / "predictions.jsonl") == first


def test_the_same_image_folder_named_otherwise_resumes(mini, scorers, tmp_path, monkeypatch):
    """A relative path, a trailing slash or a symlink to the same folder are the same images; a
    --limit or --split that asks for more of them scores only those without a prediction."""
    out = tmp_path / "out"
    argv = _argv(mini, out, "--bootstrap", "0", "--no-plots")
    assert eval_cli.main(argv + ["--limit", "5"]) == 0
    assert scorers[-1][2].seen == 5
    link = tmp_path / "link"
    link.symlink_to(mini["images"])
    assert eval_cli.main(_with_root(argv, str(link) + "/")) == 0  # the 16 test images
    assert scorers[-1][2].seen == 11
    monkeypatch.chdir(mini["images"].parent)
    assert eval_cli.main(_with_root(argv + ["--split", "all"], mini["images"].name)) == 0
    assert scorers[-1][2].seen == 8  # the 8 train images
    (row,) = list(csv.DictReader((out / "results.csv").open()))
    assert row["split"] == "all" and row["n"] == "24"


def test_run_json_of_a_later_run_does_not_refuse_an_earlier_models_data_set(mini, scorers, tmp_path, capsys):
    """The reviewer's case: data set folders answer for themselves. Evaluating with model B and
    --overwrite rewrites run.json; a later run of model A must still resume A's other folders."""
    out = tmp_path / "out"
    argv = _argv(mini, out, "--bootstrap", "0", "--no-plots")
    assert eval_cli.main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run, "model": "another"}))  # as a later run's record
    assert eval_cli.main(argv) == 0
    assert scorers[-1][2].seen == 0  # resumed: every prediction reused


def test_overwriting_one_data_set_does_not_adopt_another(mini, scorers, tmp_path, capsys):
    """--overwrite discards only the data sets it evaluates: the others keep the record of the
    model that made them, so a later run of the new model does not take them as its own."""
    registry = tmp_path / "two.yaml"
    labels = mini["root"] / "labels.csv"
    registry.write_text(
        mini["registry"].read_text().replace("labels.csv", str(labels))
        + f"blurtwo:\n  title: Blur two\n  labels: {labels}\n  image_column: image\n"
        "  score_column: mos\n  mos_range: [0, 100]\n"
    )
    base = ["--registry", str(registry), "--output", str(tmp_path / "out"), "--bootstrap", "0",
            "--num-workers", "0", "--no-progress", "--no-plots"]  # fmt: skip
    both = [*base, "--datasets", "blurmini", "blurtwo", "--image-root", f"blurmini={mini['images']}",
            "--image-root", f"blurtwo={mini['images']}"]  # fmt: skip
    assert eval_cli.main(["--model", "a", *both]) == 0
    one = [*base, "--datasets", "blurmini", "--image-root", str(mini["images"])]
    assert eval_cli.main(["--model", "b", *one, "--overwrite"]) == 0
    two = [*base, "--datasets", "blurtwo", "--image-root", str(mini["images"])]
    assert eval_cli.main(["--model", "b", *two]) == 1
    assert (
        f"{tmp_path / 'out' / 'blurtwo'} holds predictions of another model (model: 'a', now 'b')"
        in capsys.readouterr().err
    )


def test_predictions_without_a_source_record_are_refused(mini, scorers, tmp_path, capsys):
    out = tmp_path / "out"
    argv = _argv(mini, out, "--bootstrap", "0", "--no-plots")
    assert eval_cli.main(argv) == 0
    (out / "blurmini" / "source.json").unlink()  # as an older deqa left it
    assert eval_cli.main(argv) == 1
    assert "holds predictions of 'blurmini' but no source.json, so which model and images they" in (
        capsys.readouterr().err
    )
    assert eval_cli.main(argv + ["--overwrite"]) == 0


def test_image_roots_yaml(mini, tmp_path):
    path = tmp_path / "roots.yaml"
    path.write_text("koniq: /data/koniq/1024x768\nblur-mini: imgs\n")
    roots = load_image_roots(path, mini["registry"])
    assert roots == {
        "koniq10k": tmp_path.joinpath("/data/koniq/1024x768"),
        "blurmini": tmp_path / "imgs",
    }
    path.write_text("konik: /x\n")
    with pytest.raises(ValueError, match=r"roots.yaml: key 'konik': unknown data set"):
        load_image_roots(path)


@pytest.mark.parametrize("name", list_datasets())
def test_every_registered_label_file_loads_for_evaluation(name, tmp_path):
    spec = get_dataset(name)
    eval_set = load_eval_set(spec, tmp_path, "test")
    with spec.label_path.open(newline="") as f:
        n_test = sum(1 for r in csv.DictReader(f) if r[spec.split_column] == "test")
    assert len(eval_set) == n_test > 0
    assert np.all((eval_set.mos_norm >= 1.0) & (eval_set.mos_norm <= 5.0))
    assert eval_set.has_std == spec.has_std
    if spec.lower_better:  # DMOS: the best image (lowest DMOS) maps to the top of the scale
        assert eval_set.mos_norm[np.argmin(eval_set.mos)] == eval_set.mos_norm.max()


def test_koniq_official_split_is_selectable(tmp_path):
    spec = get_dataset("koniq")
    with spec.label_path.open(newline="") as f:
        n = sum(1 for r in csv.DictReader(f) if r["official_split"] == "test")
    assert len(load_eval_set(spec, tmp_path, "official_split=test")) == n > 0
    assert len(load_eval_set(spec, tmp_path, "all")) == spec.num_rows


PLAIN = """\
plain:
  title: Plain
  labels: plain.csv
  image_column: image
  score_column: mos
  mos_range: [0, 100]
"""


@pytest.fixture
def plain(mini, tmp_path):
    """The mini labels in a file without a split column (a 'batch' column instead), registered
    without split_column: the default, "split", names a column the file lacks."""
    with (tmp_path / "plain.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos", "batch"])
        w.writerows([r["image"], r["mos"], "ab"[i % 2]] for i, r in enumerate(mini["rows"]))
    (tmp_path / "reg.yaml").write_text(PLAIN)
    return tmp_path / "reg.yaml"


def test_split_all_needs_no_split_column(mini, scorers, plain, tmp_path, capsys):
    argv = _argv(mini, tmp_path / "out", "--bootstrap", "0", "--no-plots", "--split", "all")
    argv[argv.index("--registry") + 1] = str(plain)
    argv[argv.index("--datasets") + 1] = "plain"
    assert eval_cli.main(argv) == 0
    (row,) = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert row["split"] == "all" and row["n"] == "24"
    argv[argv.index("--split") + 1] = "batch=a"
    assert eval_cli.main(argv) == 0
    (row,) = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert row["split"] == "batch=a" and row["n"] == "12"

    # The default --split test: the message says why and what to do.
    del argv[argv.index("--split") : argv.index("--split") + 2]
    assert eval_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert (
        "data set 'plain' has no split column 'split' (the registry's split_column, 'split' when "
        "the entry does not set it); columns: ['batch']; evaluate every row with --split all, pick "
        "rows with --split COLUMN=VALUE, or set split_column in the registry entry to the column "
        "that holds 'test' (null when the file has none)"
    ) in err


def test_split_column_null_names_the_fix(mini, plain):
    from deqa.evaluation.datasets import resolve_datasets

    plain.write_text(PLAIN + "  split_column: null\n")
    (spec,) = resolve_datasets(["plain"], str(plain))
    with pytest.raises(ValueError) as err:
        load_eval_set(spec, mini["images"], "test")
    assert "None" not in str(err.value)
    assert (
        "data set 'plain' has no split column (its registry entry sets split_column: null and the "
        "file has no 'split' column), so --split test selects nothing; evaluate every row with "
        "--split all, or pick rows with --split COLUMN=VALUE; columns: ['batch']"
    ) in str(err.value)
    assert len(load_eval_set(spec, mini["images"], "all")) == 24
    assert len(load_eval_set(spec, mini["images"], "batch=b")) == 12


def test_readme_registry_example_parses_with_the_documented_defaults(tmp_path):
    import re
    from pathlib import Path

    from deqa.data.registry import load_registry

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Data sets of your own") :]
    (tmp_path / "reg.yaml").write_text(re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1))
    spec = load_registry(tmp_path / "reg.yaml")["mydata"]
    assert spec.split_column == "split" and spec.std_column == "std" and spec.mos_range == (0, 100)


def test_the_registry_split_column_also_selects_as_column_value(mini):
    """--split split=train is --split train (the split column was missing from COLUMN=VALUE)."""
    from deqa.evaluation.datasets import resolve_datasets

    (spec,) = resolve_datasets(["blurmini"], str(mini["registry"]))
    by_value = load_eval_set(spec, mini["images"], "train")
    by_column = load_eval_set(spec, mini["images"], "split=train")
    assert by_column.images == by_value.images and len(by_value) == 8


def test_shipped_references_name_registered_data_sets():
    refs = load_references(default_reference_path())
    assert {r.dataset for r in refs} <= set(list_datasets())


def test_module_entry_point_help():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "deqa.cli.eval", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--image-root" in out.stdout and "--compare" in out.stdout


DRIVER = """\
import sys
sys.path.insert(0, {tests!r})
from eval_helpers import SharpnessScorer
from deqa.evaluation import EvalConfig, run_evaluation
from deqa.evaluation.distributed import process_info

proc = process_info()
assert proc.world_size == 2, proc
config = EvalConfig(datasets=["blurmini"], image_roots={{"blurmini": {images!r}}}, output_dir={out!r},
                    registry={registry!r}, bootstrap=100, num_workers=0, progress=False, plots=False)
scorer = SharpnessScorer()
report = run_evaluation(config, scorer=scorer)
print(f"rank {{proc.rank}} scored {{scorer.seen}}", flush=True)
"""


@pytest.mark.slow
def test_two_gloo_processes_shard_and_merge(mini, tmp_path):
    """A real 2-process CPU job: accelerate launch, PartialState over gloo."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    single = tmp_path / "single"
    from deqa.evaluation import EvalConfig, run_evaluation

    cfg = dict(datasets=["blurmini"], image_roots={"blurmini": str(mini["images"])}, registry=str(mini["registry"]),
               bootstrap=100, num_workers=0, progress=False, plots=False)  # fmt: skip
    run_evaluation(EvalConfig(output_dir=str(single), **cfg), scorer=SharpnessScorer())
    out = tmp_path / "dist"
    script = tmp_path / "driver.py"
    tests = str(Path(__file__).parent)
    script.write_text(
        DRIVER.format(
            tests=tests, images=str(mini["images"]), out=str(out), registry=str(mini["registry"])
        )
    )
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    # The launch line that gives two gloo ranks on CPU (as in test_training_distributed.py).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "29533", str(script)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[:4000]
    assert "rank 0 scored 8" in proc.stdout and "rank 1 scored 8" in proc.stdout
    assert not list((out / "blurmini").glob("predictions.rank*.jsonl"))
    assert read_predictions(out / "blurmini" / "predictions.jsonl") == read_predictions(
        single / "blurmini" / "predictions.jsonl"
    )
    a = json.loads((single / "results.json").read_text())["datasets"][0]
    b = json.loads((out / "results.json").read_text())["datasets"][0]
    assert a["metrics"] == b["metrics"] and a["ci"] == b["ci"]


def _eval_on_two_ranks(monkeypatch, argv):
    """deqa-eval's exit codes on two ranks run as threads: a real barrier and broadcast (20 s
    timeout), so a rank left waiting for a main process that has gone reads "waited"."""
    import threading

    import deqa.evaluation.runner as runner
    from deqa.evaluation.distributed import ProcessInfo

    barrier = threading.Barrier(2, timeout=20)
    box = {}

    def share(rank):
        def fn(obj):
            if rank == 0:
                box["v"] = obj
            barrier.wait()
            out = box["v"]
            barrier.wait()
            return out

        return fn

    procs = {}
    monkeypatch.setattr(runner, "process_info", lambda: procs[threading.get_ident()])
    codes = [None, None]

    def rank(r):
        procs[threading.get_ident()] = ProcessInfo(rank=r, world_size=2, barrier=barrier.wait, share=share(r))
        try:
            codes[r] = eval_cli.main(argv)
        except threading.BrokenBarrierError:
            codes[r] = "waited"

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return codes


def test_another_models_output_stops_every_rank(mini, scorers, tmp_path, capsys, monkeypatch):
    """Under accelerate launch every rank checks the output folder: a refusal on the main process
    alone would leave the others at its barrier."""
    out = tmp_path / "out"
    assert eval_cli.main(_argv(mini, out, "--bootstrap", "0")) == 0
    argv = _argv(mini, out, "--bootstrap", "0")
    argv[argv.index("--model") + 1] = "another"
    assert _eval_on_two_ranks(monkeypatch, argv) == [1, 1]  # known from the arguments
    assert "holds predictions of another model" in capsys.readouterr().err
    source = next(out.glob("*/source.json"))
    source.write_text(json.dumps({**json.loads(source.read_text()), "model_id": "sharpness-v0"}))
    assert _eval_on_two_ranks(monkeypatch, _argv(mini, out, "--bootstrap", "0")) == [1, 1]  # once loaded
    assert capsys.readouterr().err.count("(model_id: 'sharpness-v0', now 'test-sharpness')") == 2


def test_another_image_folder_stops_every_rank(mini, scorers, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert eval_cli.main(_argv(mini, out, "--bootstrap", "0")) == 0
    copy = tmp_path / "copy"
    shutil.copytree(mini["images"], copy)
    assert _eval_on_two_ranks(monkeypatch, _with_root(_argv(mini, out, "--bootstrap", "0"), copy)) == [1, 1]
    assert capsys.readouterr().err.count(f"scored from the images in {mini['images'].resolve()}") == 2


def test_a_main_process_failure_stops_every_rank(mini, scorers, tmp_path, capsys, monkeypatch):
    """A step only the main process runs (here the metrics of a data set) raises: the other rank
    must stop with an error naming it, not wait at the next barrier."""
    import deqa.evaluation.runner as runner

    def broken_finalize(*args, **kwargs):
        raise ValueError("metrics exploded")

    monkeypatch.setattr(runner, "finalize_dataset", broken_finalize)
    assert _eval_on_two_ranks(monkeypatch, _argv(mini, tmp_path / "out", "--bootstrap", "0")) == [1, 1]
    err = capsys.readouterr().err
    assert "deqa-eval: error: metrics exploded" in err
    assert "deqa-eval: error: the main process stopped: ValueError: metrics exploded" in err


def test_a_torn_predictions_line_is_one_plain_warning(mini, scorers, tmp_path, capsys):
    out = tmp_path / "out"
    assert eval_cli.main(_argv(mini, out, "--bootstrap", "0", "--no-plots")) == 0
    preds = out / "blurmini" / "predictions.jsonl"
    text = preds.read_text()
    preds.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 20])  # the last line cut short
    capsys.readouterr()
    assert eval_cli.main(_argv(mini, out, "--bootstrap", "0", "--no-plots")) == 0
    err = capsys.readouterr().err
    assert "deqa-eval: warning: " in err and "incomplete last line" in err
    assert "UserWarning" not in err and "warnings.warn" not in err
