"""What the 1-epoch label A/B benches share (``watermark_label_ab.py``, ``exposure_label_ab.py``).

A label A/B asks which definition of one head's label t the CNN grades best, without a full
rebuild: each arm renders the same crops, plans and random draws with its own variant of that
head's degradation, trains the starting CNN on for an epoch by the build's round recipe and grades
the held-out sweeps as the arm draws them. Not a library module: it serves only these analyses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deqa.baselines import synth  # noqa: E402
from deqa.baselines.degradation import load_degradation_model, model_watermark_ink  # noqa: E402
from deqa.baselines.degradation_train import (  # noqa: E402
    DegradationTrainConfig,
    predict_intensities,
    train_degradation,
)

__all__ = ["TRAIN_SEED", "render_variant", "render_arm", "differ_only_where_labelled", "train_arm", "train_arms",
           "sweep_predictions", "check_build_sets", "checked_inputs", "check_control"]

TRAIN_SEED = 107  # not a seed of the build's sets (101-104, 106, 110-129, 150-169)


def check_build_sets(build: Path, names: list[str], error: Callable[[str], NoReturn]) -> dict[str, dict]:
    """The metas of the build's rendered sets ``names`` (``error`` names the first one missing)."""
    metas = {}
    for name in names:
        path = build / name / "meta.json"
        if not path.is_file():
            error(f"{path.parent}: missing rendered set (run scripts/build_default_model.sh {build} first)")
        metas[name] = json.loads(path.read_text())
    return metas


def checked_inputs(build: Path, cnn: str, sweeps: tuple[str, ...], head: str,
                   error: Callable[[str], NoReturn]) -> tuple[dict[str, dict], list[str], int]:
    """What every label A/B checks before any work: the build's training, validation and
    ``test/<sweep>`` sets exist and are protocol v3, and the starting CNN is a v3 CNN with a
    ``head`` head. Returns (the sets' metas, the CNN's heads, ``head``'s column)."""
    metas = check_build_sets(build, ["train", "val", *(f"test/{s}" for s in sweeps)], error)
    for name, meta in metas.items():
        if meta["config"].get("watermark_ink", False):
            error(f"{build / name}: rendered with ink-matched watermarks; --build must be a protocol v3 build")
    if model_watermark_ink(cnn):
        error(f"{cnn}: trained on ink-matched watermarks; the arms start from a v3 CNN")
    heads = list(load_degradation_model(cnn, cnn_only=True).cfg.heads)
    if head not in heads:
        error(f"{cnn}: the CNN has no {head} head")
    return metas, heads, heads.index(head)


def check_control(build: Path, control_val: Path) -> None:
    """The control arm is the build's generator: its validation draw must be the build's, byte for byte."""
    ref, _, _ = synth.load_synth_dataset(build / "val")
    mine, _, _ = synth.load_synth_dataset(control_val)
    if not np.array_equal(np.asarray(ref), np.asarray(mine)):
        raise SystemExit(f"{control_val}: differs from {build / 'val'}; this generator is not the build's")


def render_variant(meta: dict, out: Path, n: int, seed: int, workers: int, *, head: str | None = None,
                   variant: Callable | None = None, config: dict | None = None) -> Path:
    """Render a set like the build's set of ``meta`` (its photos and config, ``config`` fields
    replaced), with ``variant`` in place of the generator's ``head`` degradation if given.

    The variant must draw the same random numbers as the degradation it replaces, so the arms
    share every crop and plan, and every draw up to that degradation (a later one may draw
    differently on a different image: Poisson noise draws per pixel value). Render workers are forked from this process (Linux) and
    inherit the swapped entry; the benches check that the arm's sets differ from the control's
    where the head is applied and nowhere else.
    """
    cfg = synth.SynthConfig.from_dict({**meta["config"], **(config or {})})
    if variant is not None and head not in synth.DEGRADATIONS:
        raise ValueError(f"render_variant: head {head!r} is not a degradation of the generator")
    if variant is not None and head == "watermark" and cfg.watermark_ink:
        raise ValueError("render_variant: ink-matched marks bypass the watermark entry; a watermark variant would be ignored")
    original = synth.DEGRADATIONS.get(head) if head else None
    if variant is not None:
        synth.DEGRADATIONS[head] = variant
    try:
        synth.render_dataset(meta["photos"], out, n, cfg, seed=seed, workers=workers, progress=False)
    finally:
        if variant is not None:
            synth.DEGRADATIONS[head] = original
    return out


def render_arm(metas: dict[str, dict], root: Path, sweeps: tuple[str, ...], n: int, workers: int, **variant) -> dict[str, Path]:
    """One arm's sets under ``root``, each with the arm's generator (``variant``: the keywords of
    :func:`render_variant`): ``n`` fresh training crops drawn as the build's training set is (render
    seed :data:`TRAIN_SEED`), the build's validation draw and its held-out ``test/<sweep>`` sets."""
    def like(name: str, out: Path, count: int, seed: int) -> Path:
        return render_variant(metas[name], out, count, seed, workers, **variant)

    return {"train": like("train", root / "train", n, TRAIN_SEED),
            "val": like("val", root / "val", metas["val"]["n"], metas["val"]["seed"]),
            **{s: like(f"test/{s}", root / s, metas[f"test/{s}"]["n"], metas[f"test/{s}"]["seed"]) for s in sweeps}}


def differ_only_where_labelled(a: Path, b: Path, col: int) -> tuple[np.ndarray, int, int]:
    """Between two sets of the same plans: (which samples differ, how many of those the head
    ``col`` was applied to, how many it was not)."""
    ia, la, _ = synth.load_synth_dataset(a)
    ib, lb, _ = synth.load_synth_dataset(b)
    if not np.array_equal(la, lb):
        raise SystemExit(f"{a} and {b}: the labels differ; the arms must draw the same plans")
    applied = np.asarray(la)[:, col] > 0
    diff = np.array([not np.array_equal(ia[i], ib[i]) for i in range(len(ia))])
    return diff, int((diff & applied).sum()), int((diff & ~applied).sum())


def train_arm(train: Path, val: Path, out: Path, cnn: str, *, epochs: int, threads: int,
              model_id: str) -> tuple[str, list[float], DegradationTrainConfig]:
    """The starting CNN trained on for ``epochs`` by the build's round recipe (lr 1e-3, 200
    warm-up steps, cosine to 1%, batch 32, seed 8, patience 2); resumed if already trained.
    Returns (model folder, validation loss per epoch, the recipe)."""
    cfg = DegradationTrainConfig(
        train_data=str(train), val_data=str(val), out_dir=str(out), epochs=epochs, batch_size=32, lr=1e-3,
        warmup_steps=200, patience=2, seed=8, num_threads=threads, init_from=cnn, model_id=model_id)
    if not (out / "model.safetensors").is_file():
        train_degradation(cfg, progress=False)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line.strip()]
    return str(out), [round(r["val_loss"], 4) for r in log if "val_loss" in r], cfg


def train_arms(sets: dict[str, dict[str, Path]], arms, work: Path, cnn: str, *, epochs: int, threads: int,
               bench: str) -> tuple[dict[str, str], dict[str, list[float]], DegradationTrainConfig]:
    """:func:`train_arm` for every arm (model ``work/<arm>/model``, id ``bench-<bench>-<arm>``).
    Returns (model folder by name, the starting CNN as ``start`` first; validation losses by arm;
    the recipe)."""
    models, val_loss = {"start": cnn}, {}
    for arm in arms:
        models[arm], val_loss[arm], recipe = train_arm(sets[arm]["train"], sets[arm]["val"], work / arm / "model", cnn,
                                                       epochs=epochs, threads=threads, model_id=f"bench-{bench}-{arm}")
        print(arm, "val loss", val_loss[arm], flush=True)
    return models, val_loss, recipe


def sweep_predictions(models: dict[str, str], sets: dict[str, dict[str, Path]], arms, sweeps: tuple[str, ...],
                      col: int) -> Iterator[tuple[str, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]]:
    """For each model (CNN only), its intensity of head ``col`` and the label on every arm's
    sweeps: (model name, {(arm, sweep): (prediction, t)})."""
    from deqa.baselines.degradation import load_degradation_model

    for name, folder in models.items():
        cnn = load_degradation_model(folder, cnn_only=True)
        out = {}
        for arm in arms:
            for s in sweeps:
                images, labels, _ = synth.load_synth_dataset(sets[arm][s])
                out[arm, s] = predict_intensities(cnn, images)[:, col], np.asarray(labels)[:, col]
        yield name, out
