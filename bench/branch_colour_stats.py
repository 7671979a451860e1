"""Would explicit colour and tone statistics help the encoder branch grade colour cast and exposure?

    python bench/branch_colour_stats.py --build .cache/build --cnn CNN_FOLDER
                                        [--train-data train train_branch] [--out colour_stats.json]

Colour cast and exposure are the heads whose held-out grading trails the training scenes most
(the scene gap in BENCHMARKS.md). The branch sees the ImageNet trunk's pooled maps; classic
illuminant and exposure estimators look at other things: the chromaticity of the grey-world
mean, of the shades-of-grey (p = 6) mean, of the 99th percentile (white patch), of the brightest
and darkest 5% of pixels and of the edges (grey edge); opponent-colour percentiles, the share and
colour of near-neutral pixels; luma percentiles, clipped shares and a 16-bin luma histogram (67
numbers per crop, from every 4th pixel in each direction, in :func:`colour_stats`).

Three MLPs, all with the branch recipe read from the library (``BranchTrainConfig``'s defaults:
AdamW, lr, weight decay, batch, warm-up and cosine schedule, BCE with its loss weights, epochs, seed;
the branch's own MLP, ``branch_head``; standardised inputs; best validation loss kept), on the same
training crops:

- ``trunk``: the trunk's cached features (the shipped branch's inputs): the control;
- ``trunk + stats``: those features and the 67 statistics;
- ``stats``: the statistics alone.

Each is blended with the CNN per head as the build does it (share on a 0.05 grid with the best
mean grading SRCC on the validation sweeps of the training scenes), then graded on the held-out
protocol's sets (``test/``): sweep SRCC with nuisance / isolated, watermark ROC-AUC and the overall
SRCC on the mixed set. The branch alone (share 1) is reported too. Statistics are cached per set
in ``<set>/bench_colour_stats_v1.npy``; trunk features come from the library's cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deqa.baselines.branch_train import (  # noqa: E402
    BranchTrainConfig,
    _logits,
    branch_features,
    check_rendered,
    choose_mix,
    fit_head,
    imagenet_branch,
)
from deqa.baselines.degradation import load_degradation_model, model_watermark_ink  # noqa: E402
from deqa.baselines.degradation_config import EncoderBranchConfig, mix_logits  # noqa: E402
from deqa.baselines.degradation_train import evaluate_degradation, predict_intensities  # noqa: E402
from deqa.baselines.encoder_branch import branch_head  # noqa: E402
from deqa.baselines.synth import load_synth_dataset  # noqa: E402
from deqa.metrics import srcc  # noqa: E402

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
ARMS = ("trunk", "trunk + stats", "stats")


def colour_stats(images: np.ndarray) -> np.ndarray:
    """[B, S, S, 3] uint8 -> [B, 67] float32 colour and tone statistics (every 4th pixel)."""
    x = images[:, ::4, ::4].astype(np.float32) / 255.0
    b = len(x)
    lin = x**2.2
    flat = lin.reshape(b, -1, 3)
    n = flat.shape[1]

    def chroma(v):  # log R/G and B/G of a [B, 3] colour
        v = np.log(v + 1e-3)
        return [v[:, 0] - v[:, 1], v[:, 2] - v[:, 1]]

    f = chroma(flat.mean(1)) + chroma((flat**6).mean(1) ** (1 / 6)) + chroma(np.percentile(flat, 99, axis=1))
    y = flat @ LUMA
    k = n // 20
    order = np.argpartition(y, (k, n - k), axis=1)
    f += chroma(np.take_along_axis(flat, order[:, n - k :, None], 1).mean(1))  # brightest 5%
    f += chroma(np.take_along_axis(flat, order[:, :k, None], 1).mean(1))  # darkest 5%
    f += chroma(np.abs(np.diff(lin, axis=2)).mean((1, 2)) + np.abs(np.diff(lin, axis=1)).mean((1, 2)))  # grey edge
    g = x.reshape(b, -1, 3)
    opp_a = g[..., 0] - g[..., 1]
    opp_b = 0.5 * (g[..., 0] + g[..., 1]) - g[..., 2]
    for o in (opp_a, opp_b):
        f += [o.mean(1), o.std(1), *np.percentile(o, [5, 25, 50, 75, 95], axis=1)]
    sat = np.sqrt(opp_a**2 + opp_b**2)
    f += [sat.mean(1), sat.std(1), (sat < 0.03).mean(1), (sat < 0.08).mean(1)]
    low = np.argpartition(sat, n // 5, axis=1)[:, : n // 5]  # the most neutral fifth: its colour
    f += [np.take_along_axis(opp_a, low, 1).mean(1), np.take_along_axis(opp_b, low, 1).mean(1)]
    yg = g @ LUMA
    f += list(np.percentile(yg, [0.5, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5], axis=1))
    f += [yg.mean(1), yg.std(1), (yg >= 0.98).mean(1), (yg >= 0.995).mean(1), (yg <= 0.01).mean(1), (yg <= 0.03).mean(1)]
    f += [(g.max(-1) >= 0.995).mean(1), (g.min(-1) <= 0.005).mean(1)]
    hist = np.stack([np.histogram(r, bins=16, range=(0, 1))[0] for r in yg]).astype(np.float32) / n
    return np.concatenate([np.stack(f, 1).astype(np.float32), hist], 1)


def set_stats(path: Path) -> np.ndarray:
    images, _, _ = load_synth_dataset(path)
    cache = path / "bench_colour_stats_v1.npy"
    if cache.is_file():
        out = np.load(cache)
        if len(out) == len(images):
            return out
    out = np.concatenate([colour_stats(np.asarray(images[s : s + 256])) for s in range(0, len(images), 256)])
    np.save(cache, out)
    return out


def train_mlp(x_tr, y_tr, x_va, y_va, heads, cfg: BranchTrainConfig, weights: list[float] | None = None):
    """The branch recipe (``fit_head``: the shipped training loop, ``cfg``'s lr, weight decay, batch,
    warm-up, schedule, epochs, seed, loss weights; the branch's own MLP) on a standardised feature
    matrix; returns (predict(features) -> logits, best validation loss, its epoch). ``weights``:
    one loss weight per target column, in place of ``cfg.loss_weights`` looked up by ``heads``."""
    torch.manual_seed(cfg.seed)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6

    def norm(a):
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    xt, xv = norm(x_tr), norm(x_va)
    model = branch_head(cfg.branch_config(), xt.shape[1], y_tr.shape[1])
    w = torch.tensor(weights if weights is not None else [cfg.loss_weights.get(h, 1.0) for h in heads], dtype=torch.float32)
    best, log = fit_head(model, model, (xt, torch.from_numpy(y_tr)), (xv, torch.from_numpy(y_va)), w, cfg)
    best_epoch = min(log, key=lambda r: r["val_loss"])["epoch"]

    def predict(a):
        with torch.no_grad():
            return model(norm(a)).numpy()

    return predict, best, best_epoch


def add_build_args(ap: argparse.ArgumentParser) -> None:
    """The arguments of every bench that trains branch MLPs on a build's sets."""
    ap.add_argument("--build", required=True, help="work folder of scripts/build_default_model.sh")
    ap.add_argument("--cnn", required=True, help="degradation-model folder whose CNN the MLPs are blended with")
    ap.add_argument("--train-data", nargs="+", default=["train", "train_branch"], help="training sets, relative to --build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)


def load_set(path: Path, trunk, cnn=None) -> dict:
    """A rendered set as the arms read it: the trunk's cached features, the labels, the head it
    sweeps (None for other sets) and, given the CNN, its logits."""
    images, labels, meta = load_synth_dataset(path)
    d = {"trunk": branch_features(trunk, path), "y": np.asarray(labels), "head": meta["config"].get("sweep")}
    if cnn is not None:
        d["cnn"] = _logits(predict_intensities(cnn, images))
    return d


def build_sets(ap: argparse.ArgumentParser, build: Path, train_data: list[str], cnn_dir: str):
    """The build's sets, checked against the CNN (heads, size, watermark labels) before any feature:
    (cnn, heads, training sets, val, validation sweeps, held-out sweeps, held-out mixed set)."""
    test = build / "test"
    held_sweeps = sorted(test.glob("sweep_*")) + sorted(test.glob("iso_*"))
    val_sweeps = sorted(build.glob("val_sweep_*")) + sorted(build.glob("val_iso_*"))
    train = [build / t for t in train_data]
    sets = [test / "mixed", build / "val", *train, *held_sweeps, *val_sweeps]
    for need in sets:
        if not (need / "meta.json").is_file():
            ap.error(f"{need}: missing rendered set (run scripts/build_default_model.sh {build} first)")
    cnn = load_degradation_model(cnn_dir, cnn_only=True)
    heads = tuple(cnn.cfg.heads)
    ink = model_watermark_ink(cnn_dir)
    for need in sets:
        images, _, meta = load_synth_dataset(need)
        check_rendered(need, images, meta, heads, cnn.cfg.image_size, ink)
    return cnn, heads, train, build / "val", val_sweeps, held_sweeps, test / "mixed"


def blend_and_grade(read, x, val: dict, vsw: list[dict], hsw: dict[str, dict], mixed: dict, heads: tuple[str, ...],
                    weights: list[float]) -> dict:
    """Blend an MLP with the CNN per head as the build does (``choose_mix``: the branch's share on
    ``MIX_GRID`` with the best mean grading SRCC on the head's validation sweeps, else the lowest
    validation BCE), then grade on the held-out sets.

    ``read(features) -> per-head logits``; ``x(set) -> that set's features``; the sets are dicts with
    the CNN's logits (``cnn``), labels (``y``) and the sweep's head (``head``).
    """
    sweeps = {h: [(d["cnn"], read(x(d)), d["y"]) for d in vsw if d["head"] == h] for h in heads}
    mix, _ = choose_mix(val["cnn"], read(x(val)), val["y"], heads, sweeps)
    grading, branch_only = {}, {}
    m = np.array([mix[h] for h in heads], np.float32)
    for name, d in hsw.items():
        j = heads.index(d["head"])
        p = read(x(d))
        key = f"{d['head']} {'isolated' if name.startswith('iso_') else 'nuisance'}"
        grading[key] = round(srcc(mix_logits(d["cnn"][:, j], p[:, j], m[j]), d["y"][:, j]), 4)
        branch_only[key] = round(srcc(p[:, j], d["y"][:, j]), 4)
    blended = 1 / (1 + np.exp(-mix_logits(mixed["cnn"], read(x(mixed)), m)))
    ev = evaluate_degradation(blended, mixed["y"], list(heads), weights)
    return {"mix": mix, "grading": grading, "branch_only_grading": branch_only,
            "watermark_auc": round(ev["heads"]["watermark"]["roc_auc"], 4), "overall": round(ev["overall_srcc_vs_weighted_total"], 4)}


def grading_row(name: str, r: dict, heads: tuple[str, ...]) -> str:
    """A Markdown row of a :func:`blend_and_grade` result: per head nuisance / isolated grading,
    watermark ROC-AUC and overall SRCC."""
    cells = [f"{r['grading'][h + ' nuisance']:.3f} / {r['grading'][h + ' isolated']:.3f}" for h in heads]
    return f"| {name} | " + " | ".join(cells) + f" | {r['watermark_auc']:.3f} | {r['overall']:.3f} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    build = Path(args.build)
    cnn, heads, train_sets, val_set, val_sweeps, held_sweeps, mixed_set = build_sets(ap, build, args.train_data, args.cnn)
    trunk = imagenet_branch(EncoderBranchConfig(), len(heads), cnn.cfg.image_size)

    def load(path: Path, with_cnn: bool = True) -> dict:
        return {**load_set(path, trunk, cnn if with_cnn else None), "stats": set_stats(path)}

    train = [load(p, with_cnn=False) for p in train_sets]
    val = load(val_set)
    vsw = [load(p) for p in val_sweeps]
    hsw = {p.name: load(p) for p in held_sweeps}
    mixed = load(mixed_set)

    def inputs(d, arm):
        return {"trunk": d["trunk"], "stats": d["stats"], "trunk + stats": np.concatenate([d["trunk"], d["stats"]], 1)}[arm]

    y_tr = np.concatenate([d["y"] for d in train])
    recipe = BranchTrainConfig(cnn=args.cnn, train_data=args.train_data, val_data=str(build / "val"), out_dir=str(build))
    results = {}
    for arm in ARMS:
        predict, best, best_epoch = train_mlp(np.concatenate([inputs(d, arm) for d in train]), y_tr, inputs(val, arm), val["y"],
                                              heads, recipe)
        results[arm] = {"best_val_loss": round(best, 5), "best_epoch": best_epoch,
                        **blend_and_grade(predict, lambda d, arm=arm: inputs(d, arm), val, vsw, hsw, mixed, heads,
                                          cnn.cfg.normalised_weights())}
        print(arm, json.dumps(results[arm]), flush=True)
    print("| MLP inputs | " + " | ".join(heads) + " | watermark AUC | overall |")
    print("|---|" + "---|" * (len(heads) + 2))
    for arm, r in results.items():
        print(grading_row(arm, r, heads))
    if args.out:
        Path(args.out).write_text(json.dumps({"cnn": args.cnn, "train_data": args.train_data, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
