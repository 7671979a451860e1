"""The evaluation harness: score every image of every requested data set with one
:class:`~deqa.scorer.Scorer`, write the predictions as they come, then the metrics, tables and plots.

Layout of an output folder::

    run.json                       what the last run was (model, config, deqa version)
    results.md / .csv / .json      the cross-data-set table
    compare.md                     this run beside the published numbers (with compare=True)
    <dataset>/source.json          what its predictions were made by and from (model, image folder)
    <dataset>/predictions.jsonl    one line per image, appended batch by batch (resumable)
    <dataset>/metrics.json         everything about that data set, incl. missing/failed images
    <dataset>/missing.txt          every image not found under --image-root (only when some are)
    <dataset>/scatter.png          predicted score vs MOS with the fitted logistic
    <dataset>/histogram.png        predicted and MOS score histograms

Rerunning into the same folder scores only the images without a prediction; a folder holding
another model's predictions, or a data set's predictions scored from another image folder, is
refused. Under ``accelerate launch`` each process scores a strided share (see :mod:`.distributed`).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..fileio import write_text_atomic
from ..levels import LEVEL_VALUES
from ..metrics import (
    BOOTSTRAP_METRICS,
    gaussian_js,
    gaussian_kl,
    gaussian_w2,
    iqa_bootstrap_cis,
    iqa_metrics,
    js_divergence,
)
from ..scorer import Scorer
from .datasets import EvalSet, load_eval_set, parse_split, resolve_datasets
from .distributed import (
    SINGLE_PROCESS,
    ProcessInfo,
    on_main,
    process_info,
    shard,
    shard_file,
    shard_files,
)
from .plots import plot_histogram, plot_scatter
from .predictions import (
    PREDICTIONS_FILE,
    Prediction,
    PredictionWriter,
    merge_prediction_files,
    read_predictions,
)
from .references import format_comparison, load_references
from .report import DatasetResult, json_safe, write_tables

__all__ = [
    "EvalConfig",
    "EvalReport",
    "ScoringStats",
    "evaluate_dataset",
    "score_missing",
    "finalize_dataset",
    "distribution_gaps",
    "run_evaluation",
    "build_eval_sets",
    "model_training_data",
    "MAX_NAMED",
]

# Per data set folder: the model and image folder its predictions come from (see _check_output).
SOURCE_FILE = "source.json"

# How many missing / failed images are named in messages and results (the rest are counted).
MAX_NAMED = 5
MISSING_FILE = "missing.txt"  # per data set: every image not found, one name a line

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class EvalConfig:
    """Everything ``deqa-eval`` needs; saved to run.json next to the results.

    model / model_kwargs: what :func:`deqa.load.load_scorer` gets (None = built-in model).
    datasets: registered names or aliases (or names from ``registry``, a YAML of extra data sets in
    the registry's schema). image_roots: data set name -> image folder. split: a value of the
    registry's split column, ``COLUMN=VALUE`` (e.g. ``official_split=test``) or ``all``.
    bootstrap: resamples for the CIs (0 = none) of ``ci_metrics`` at level 1 - alpha.
    limit: only the first N images of each split (a quick look, not a benchmark number).
    training_data: what the model was trained on, stated beside the published numbers when the
    model does not record it itself.
    """

    datasets: list[str]
    image_roots: dict[str, str]
    output_dir: str
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    split: str = "test"
    batch_size: int | None = None
    num_workers: int = 2
    bootstrap: int = 1000
    alpha: float = 0.05
    seed: int = 0
    ci_metrics: tuple[str, ...] = ("srcc", "plcc_fitted", "plcc")
    plots: bool = True
    limit: int | None = None
    registry: str | None = None
    compare: bool = False
    references: str | None = None
    training_data: str | None = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("no data set given: pass --datasets NAME [NAME ...]")
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"--datasets lists a data set twice: {self.datasets}")
        parse_split(self.split)
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise ValueError(
                f"--bootstrap must be 0 (no CIs) or >= 2 resamples, got {self.bootstrap}"
            )
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"--alpha must be in (0, 1), got {self.alpha}")
        unknown = [m for m in self.ci_metrics if m not in BOOTSTRAP_METRICS]
        if unknown:
            raise ValueError(f"unknown CI metric(s) {unknown}; choose from {BOOTSTRAP_METRICS}")
        if self.limit is not None and self.limit < 3:
            raise ValueError(f"--limit must be >= 3 images (correlations need 3), got {self.limit}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {self.num_workers}")
        if Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise ValueError(f"--output {self.output_dir} is a file; give a folder for the results")
        self.ci_metrics = tuple(self.ci_metrics)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci_metrics"] = list(self.ci_metrics)
        return d


@dataclass
class ScoringStats:
    """What one process did for one data set."""

    n_labels: int
    n_done_before: int
    n_missing: int
    missing_examples: list[str]
    n_scored_now: int


@dataclass
class EvalReport:
    """Result of :func:`run_evaluation` (complete on the main process; empty on the others)."""

    results: list[DatasetResult]
    output_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    comparison: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every data set was evaluated (has metrics)."""
        return all(r.ok for r in self.results)

    @property
    def n_not_scored(self) -> int:
        """Images of the evaluated data sets left out of the metrics: missing or failed."""
        return sum(r.n_missing + r.n_failed for r in self.results)


# --------------------------------------------------------------------------------------------
# one data set
# --------------------------------------------------------------------------------------------
def _done_images(folder: Path) -> set[str]:
    return {k for k, p in read_predictions(folder / PREDICTIONS_FILE).items() if p.ok}


def score_missing(
    scorer: Scorer,
    eval_set: EvalSet,
    folder: str | Path,
    *,
    proc: ProcessInfo = SINGLE_PROCESS,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> ScoringStats:
    """Score this process's share of the images that exist and have no prediction yet.

    Predictions are appended to ``predictions.jsonl`` (one process) or to this rank's shard file,
    flushed batch by batch; an exception (or Ctrl-C) keeps everything scored so far.

    Every rank must derive its share from the same list of what is done. So the main process first
    folds the shard files of an interrupted run into ``predictions.jsonl``; after a barrier every
    rank reads only that file, which no rank writes while scoring.
    """
    folder = Path(folder)

    def merge():
        folder.mkdir(parents=True, exist_ok=True)
        merge_prediction_files(folder / PREDICTIONS_FILE, shard_files(folder))

    on_main(proc, merge)
    proc.barrier()
    done = _done_images(folder)
    missing = [
        i
        for i in range(len(eval_set))
        if eval_set.images[i] not in done and not eval_set.path(i).is_file()
    ]
    missing_set = set(missing)
    todo = [
        i for i in range(len(eval_set)) if eval_set.images[i] not in done and i not in missing_set
    ]
    mine = shard(todo, proc.rank, proc.world_size)
    target = folder / PREDICTIONS_FILE if proc.world_size == 1 else shard_file(folder, proc.rank)
    flush_every = max(1, batch_size or getattr(scorer, "default_batch_size", 8))
    written = 0
    with PredictionWriter(target) as writer:
        buffer: list[Prediction] = []
        try:
            results = scorer.iter_score(
                [eval_set.path(i) for i in mine],
                batch_size=batch_size,
                num_workers=num_workers,
                progress=progress,
            )
            for i, res in zip(mine, results, strict=False):
                buffer.append(Prediction.from_result(eval_set.images[i], res))
                if len(buffer) >= flush_every:
                    written += writer.write(buffer)
                    buffer.clear()
        finally:
            written += writer.write(buffer)
    return ScoringStats(
        n_labels=len(eval_set),
        n_done_before=len(done & set(eval_set.images)),
        n_missing=len(missing),
        missing_examples=[eval_set.images[i] for i in missing[:MAX_NAMED]],
        n_scored_now=written,
    )


def distribution_gaps(
    predictions: list[Prediction], mos_norm: np.ndarray, std_norm: np.ndarray | None
) -> tuple[dict[str, float], int]:
    """Mean gaps between each label's distribution and the predicted one, over the images with a
    label std > 0 and a predicted std (the level-distribution models). Returns (gaps, n).

    kl_gauss: KL(label Gaussian || predicted Gaussian), DeQA-Score's direction; js_gauss: exact
    Gaussian JS; js_gauss_deqa: DeQA-Score's moment-matched approximation; w2_gauss: 2-Wasserstein;
    js_levels: discrete JS between the predicted level probabilities and the label's soft label
    (deqa.levels.soft_labels, method "moment"), when the predictions carry 5 level probabilities.
    """
    if std_norm is None or not predictions:
        return {}, 0
    p_std = np.array([np.nan if p.std is None else p.std for p in predictions])
    mask = np.isfinite(std_norm) & (std_norm > 0) & np.isfinite(p_std)
    n = int(mask.sum())
    if n == 0:
        return {}, 0
    p_mu = np.array([p.score for p in predictions])[mask]
    mu, s, ps = mos_norm[mask], std_norm[mask], p_std[mask]
    gaps = {
        "kl_gauss": float(np.mean(gaussian_kl(mu, s, p_mu, ps))),
        "js_gauss": float(np.mean(gaussian_js(mu, s, p_mu, ps))),
        "js_gauss_deqa": float(np.mean(gaussian_js(mu, s, p_mu, ps, method="deqa"))),
        "w2_gauss": float(np.mean(gaussian_w2(mu, s, p_mu, ps))),
    }
    probs = [p.probs for p, m in zip(predictions, mask, strict=True) if m]
    if all(pr is not None and len(pr) == 5 for pr in probs):
        from ..levels import soft_labels

        p_arr = np.array([list(pr.values()) for pr in probs], dtype=np.float64)
        gaps["js_levels"] = float(np.mean(js_divergence(p_arr, soft_labels(mu, s, "moment"))))
    return gaps, n


def finalize_dataset(
    eval_set: EvalSet,
    folder: str | Path,
    *,
    model_id: str,
    stats: ScoringStats | None = None,
    bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    ci_metrics: tuple[str, ...] = ("srcc", "plcc_fitted", "plcc"),
    plots: bool = True,
    gaps: bool = True,
) -> DatasetResult:
    """Merge per-rank shards, join the predictions with the labels, compute metrics, CIs, gaps and
    plots, and write ``metrics.json``. Runs on the main process only. ``gaps=False`` skips the
    distribution gaps (a model whose scores are not on the 1-5 level scale)."""
    folder = Path(folder)
    main_file = folder / PREDICTIONS_FILE
    merge_prediction_files(main_file, shard_files(folder))
    preds = read_predictions(main_file)
    ok_idx = [i for i, img in enumerate(eval_set.images) if img in preds and preds[img].ok]
    failed = [img for img in eval_set.images if img in preds and not preds[img].ok]
    # Images with neither a prediction nor a file; every one of them goes to missing.txt (the
    # results name only the first few), and a stale list from an earlier run goes away.
    miss = [img for i, img in enumerate(eval_set.images) if img not in preds and not eval_set.path(i).is_file()]
    if stats is not None:
        n_missing, missing_examples = stats.n_missing, stats.missing_examples
    else:
        n_missing, missing_examples = len(miss), miss[:MAX_NAMED]
    missing_file = folder / MISSING_FILE
    if miss:
        write_text_atomic(missing_file, "".join(f"{img}\n" for img in miss))
    else:
        missing_file.unlink(missing_ok=True)
    result = DatasetResult(
        dataset=eval_set.name,
        title=eval_set.title,
        split=eval_set.split,
        model=model_id,
        n_labels=len(eval_set),
        n_scored=len(ok_idx),
        n_missing=n_missing,
        missing_examples=missing_examples,
        n_failed=len(failed),
        failed_examples=[f"{img}: {preds[img].error}" for img in failed[:MAX_NAMED]],
        predictions=str(main_file),
    )
    ok_preds = [preds[eval_set.images[i]] for i in ok_idx]
    pred = np.array([p.score for p in ok_preds], dtype=np.float64)
    mos = eval_set.mos_norm[ok_idx]
    try:
        result.metrics = iqa_metrics(pred, mos, warn=False)
    except ValueError as err:
        result.error = str(err)
    if result.metrics is not None:
        if bootstrap:
            result.cis = iqa_bootstrap_cis(
                pred, mos, ci_metrics, n_resamples=bootstrap, alpha=alpha, seed=seed
            )
        std = None if eval_set.std_norm is None or not gaps else eval_set.std_norm[ok_idx]
        result.gaps, result.n_gaps = distribution_gaps(ok_preds, mos, std)
        if plots:
            title = f"{eval_set.title} ({eval_set.split}): {model_id}"
            result.plots = {
                "scatter": str(
                    plot_scatter(pred, mos, result.metrics, folder / "scatter.png", title)
                ),
                "histogram": str(plot_histogram(pred, mos, folder / "histogram.png", title)),
            }
    (folder / "metrics.json").write_text(
        json.dumps(json_safe(result.to_dict()), indent=2) + "\n", encoding="utf-8"
    )
    return result


def evaluate_dataset(
    scorer: Scorer,
    eval_set: EvalSet,
    folder: str | Path,
    *,
    proc: ProcessInfo = SINGLE_PROCESS,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = False,
    log: Log = _stderr,
    **finalize_kwargs,
) -> DatasetResult | None:
    """Score what is missing (every process), then finalize (main process; others get None)."""
    stats = score_missing(
        scorer,
        eval_set,
        folder,
        proc=proc,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    proc.barrier()

    def finalize() -> DatasetResult:
        if stats.n_missing and stats.n_missing == stats.n_labels:
            first = stats.missing_examples[0]
            log(
                f"{eval_set.name}: none of its {stats.n_labels} images is under {eval_set.image_root} "
                f"(looked for {Path(eval_set.image_root) / first}, ...): --image-root must be the folder "
                f"that holds the images as the labels name them, e.g. {first!r}"
            )
        elif stats.n_missing:
            log(
                f"{eval_set.name}: {stats.n_missing} of {stats.n_labels} images not found under "
                f"{eval_set.image_root} (first: {', '.join(stats.missing_examples)}; all in "
                f"{folder / MISSING_FILE}); evaluating the rest"
            )
        # Gaps compare predicted and label distributions on the 1-5 scale: only meaningful for a
        # model whose levels are valued 1..5 (a VLM with other level_values is still correlated).
        values = getattr(scorer, "level_values", None)
        on_level_scale = values is None or np.array_equal(
            np.asarray(values, dtype=float), LEVEL_VALUES
        )
        finalize_kwargs.setdefault("gaps", on_level_scale)
        result = finalize_dataset(
            eval_set, folder, model_id=scorer.model_id, stats=stats, **finalize_kwargs
        )
        if result.n_failed:
            log(
                f"{eval_set.name}: {result.n_failed} images could not be scored (first: {result.failed_examples[0]})"
            )
        if result.metrics is not None and result.metrics.fit.fallback:
            log(
                f"{eval_set.name}: {result.metrics.fit.message}; PLCC (logistic) uses a linear mapping"
            )
        return result

    result = on_main(proc, finalize)
    proc.barrier()
    return result


# --------------------------------------------------------------------------------------------
# a whole run
# --------------------------------------------------------------------------------------------
def build_eval_sets(config: EvalConfig) -> list[EvalSet]:
    """Labels, split and image folder of every requested data set; fails before any model loads."""
    specs = resolve_datasets(config.datasets, config.registry)
    roots = {}
    for key, folder in config.image_roots.items():
        roots[resolve_datasets([key], config.registry)[0].name] = folder
    sets = []
    for spec in specs:
        if spec.name not in roots:
            raise ValueError(
                f"no image folder for data set {spec.name!r}: pass --image-root {spec.name}=DIR "
                "(or a YAML mapping names to folders with --image-roots)"
            )
        root = Path(roots[spec.name]).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder of {spec.name!r} does not exist: {root}")
        eval_set = load_eval_set(spec, root, config.split)
        if config.limit is not None:
            eval_set = eval_set.head(config.limit)
        sets.append(eval_set)
    unused = sorted(set(roots) - {s.name for s in sets})
    if unused:
        raise ValueError(f"--image-root given for data set(s) not in --datasets: {unused}")
    return sets


# The run.json / source.json keys that say which model made predictions; model_id is known
# only once the model is loaded.
_MODEL_KEYS = ("model", "model_id", "model_kwargs")


def _builtin_is_none(key: str, value: Any) -> Any:
    # --model None and "builtin" both mean the built-in model (run.json records the argument).
    return None if key == "model" and value == "builtin" else value


def _describe(key: str, value: Any) -> str:
    return "the built-in model" if key == "model" and value in (None, "builtin") else repr(value)


def _refuse_another_model(where: Path, old: dict[str, Any], now: dict[str, Any]) -> None:
    for key in _MODEL_KEYS:
        if key in now and _builtin_is_none(key, old.get(key)) != _builtin_is_none(key, now[key]):
            raise ValueError(
                f"{where} holds predictions of another model ({key}: {_describe(key, old.get(key))}, "
                f"now {_describe(key, now[key])}); choose another --output, or pass --overwrite to "
                "discard them"
            )


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(
            f"{path}: not valid JSON ({err}); choose another --output, or pass --overwrite"
        ) from None
    if not isinstance(record, dict):
        raise ValueError(
            f"{path}: expected a JSON object; choose another --output, or pass --overwrite"
        )
    return record


def _image_root_id(eval_set: EvalSet) -> str:
    """What identifies a data set's images: its folder, absolute and with symlinks resolved, so
    that one folder named two ways is the same and two copies of a data set are not."""
    return str(Path(eval_set.image_root).expanduser().resolve())


def _has_predictions(folder: Path) -> bool:
    # Non-empty files only: a run that scored nothing (every image missing under a wrong
    # --image-root, a model that failed to load) leaves an empty file, which must not tie the
    # folder to that run's image folder or model.
    return any(f.is_file() and f.stat().st_size > 0 for f in [folder / PREDICTIONS_FILE, *shard_files(folder)])


def _check_output(
    out: Path, model: dict[str, Any], eval_sets: list[EvalSet], overwrite: bool
) -> None:
    """Refuse an output folder whose predictions another model made, or (per data set) that were
    scored from another image folder: a resumed run would report them as its own.

    ``model``: the :data:`_MODEL_KEYS` known so far; called before the model loads (without
    model_id, so that a refusal is immediate) and again after. An image folder is compared only
    where the data set's folder holds predictions: deleting it (or --overwrite) starts it afresh,
    and another split or --limit of the same folder only scores the images without a prediction.

    Read-only, so every rank runs it: a refusal on the main process alone would leave the others
    waiting at its barrier.
    """
    if overwrite:
        return
    # Each data set's source.json is the authority, not run.json (the last run's record): after
    # `--overwrite` on data set A with another model, data set B's predictions are still the
    # first model's, and a run of that model on B must resume them, not be refused.
    for eval_set in eval_sets:
        folder = out / eval_set.name
        if not _has_predictions(folder):
            continue
        source_file = folder / SOURCE_FILE
        if not source_file.is_file():
            raise ValueError(
                f"{folder} holds predictions of {eval_set.name!r} but no {SOURCE_FILE}, so which "
                "model and images they come from is unknown (an older deqa-eval, or evaluate_dataset "
                f"called directly, wrote them); delete {folder} (or pass --overwrite) to score it "
                "again, or choose another --output"
            )
        source = _read_record(source_file)
        _refuse_another_model(folder, source, model)
        was, now = source.get("image_root"), _image_root_id(eval_set)
        if was != now:
            raise ValueError(
                f"{folder} holds predictions of {eval_set.name!r} scored from the images in {was}, "
                f"not {now} (--image-root): other images under the same names (another resolution, "
                "another copy) score differently. Choose another --output for this image folder, or "
                f"delete {folder} (or pass --overwrite) to score it again from {now}"
            )


def _prepare_output(
    out: Path, meta: dict[str, Any], eval_sets: list[EvalSet], overwrite: bool
) -> None:
    run_file = out / "run.json"
    if overwrite:
        for s in eval_sets:
            shutil.rmtree(out / s.name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(json_safe(meta), indent=2) + "\n", encoding="utf-8")
    # Written before any prediction, so that every predictions file has its source beside it.
    for s in eval_sets:
        folder = out / s.name
        folder.mkdir(exist_ok=True)
        source = {k: meta[k] for k in _MODEL_KEYS} | {"image_root": _image_root_id(s)}
        (folder / SOURCE_FILE).write_text(
            json.dumps(json_safe(source), indent=2) + "\n", encoding="utf-8"
        )


def model_training_data(scorer: Scorer) -> str | None:
    """What a model says it was trained on: a ``training_data`` attribute (baselines), or the
    ``extras`` of a VLM's deqa_config.json (``training_data``, else the ``train_manifests`` that
    deqa-train records)."""
    value = getattr(scorer, "training_data", None)
    if value:
        return str(value)
    extras = getattr(getattr(scorer, "config", None), "extras", None) or {}
    if extras.get("training_data"):
        return str(extras["training_data"])
    manifests = extras.get("train_manifests")
    if manifests:
        return "manifests: " + ", ".join(Path(str(m)).name for m in manifests)
    return None


def run_evaluation(
    config: EvalConfig, *, scorer: Scorer | None = None, log: Log = _stderr
) -> EvalReport:
    """Evaluate one model on every data set of ``config``; see the module docstring for outputs.

    ``scorer``: an already built scorer (tests, notebooks); otherwise ``load_scorer(config.model,
    **config.model_kwargs)`` (plus ``device=`` of this process under ``accelerate launch``).
    """
    proc = process_info()
    eval_sets = build_eval_sets(config)
    if config.compare:  # fail on a bad reference file before hours of scoring
        references = load_references(config.references, extra_datasets=[s.name for s in eval_sets])
    out = Path(config.output_dir)
    # What the arguments say about the model: refuse a folder of another model's predictions
    # before loading a VLM for minutes. model_id is checked once the model is loaded.
    model = {"model": config.model, "model_kwargs": config.model_kwargs}
    _check_output(out, model, eval_sets, config.overwrite)
    if scorer is None:
        from ..load import baseline_device, is_baseline, load_scorer

        kwargs = dict(config.model_kwargs)
        if proc.world_size > 1 and proc.device is not None:
            kwargs.setdefault("device", proc.device)
        if is_baseline(config.model):  # numpy for a small job, torch for a big one
            kwargs["device"] = baseline_device(kwargs.get("device"), sum(len(es.images) for es in eval_sets))
        scorer = load_scorer(config.model, **kwargs)
    training_data = config.training_data or model_training_data(scorer)
    meta = {
        "model": config.model,
        "model_id": scorer.model_id,
        "model_kwargs": config.model_kwargs,
        "training_data": training_data,
        "deqa_version": __version__,
        "world_size": proc.world_size,
        "config": config.to_dict(),
    }
    _check_output(out, meta, eval_sets, config.overwrite)
    proc.barrier()  # every rank has read run.json and source.json before the main process rewrites them
    on_main(proc, lambda: _prepare_output(out, meta, eval_sets, config.overwrite))
    proc.barrier()

    results: list[DatasetResult] = []
    for eval_set in eval_sets:
        if proc.is_main:
            log(
                f"{eval_set.name} ({eval_set.split}): {len(eval_set)} images, model {scorer.model_id}"
            )
        result = evaluate_dataset(
            scorer,
            eval_set,
            out / eval_set.name,
            proc=proc,
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            progress=config.progress and proc.is_main,
            log=log,
            bootstrap=config.bootstrap,
            alpha=config.alpha,
            seed=config.seed,
            ci_metrics=config.ci_metrics,
            plots=config.plots,
        )
        if result is not None:
            results.append(result)
    report = EvalReport(results=results, output_dir=out, meta=meta)
    if not proc.is_main:
        return report
    confidence = 1.0 - config.alpha if config.bootstrap else None
    report.tables = write_tables(results, out, meta, confidence)
    if config.compare:
        report.comparison = format_comparison(results, references, training_data)
        (out / "compare.md").write_text(report.comparison, encoding="utf-8")
        report.tables["compare"] = out / "compare.md"
    return report
