"""Would the encoder branch grade colour cast and exposure better if it learnt their direction too?

    python bench/branch_polar_targets.py --build .cache/build --cnn CNN_FOLDER
                                         [--train-data train train_branch] [--seeds 2] [--out polar.json]

The colour-cast head must read a cast's strength whatever its hue, and the exposure head a
brightness error whichever way it goes. As targets both are magnitudes of something with a
direction: a cast is a vector in the chroma plane (the generator's hue angle a, length t), an
exposure error a signed number (t under or over). A regression onto the magnitude asks the MLP
for a V-shaped function of the image's colour and brightness; a regression onto the vector or the
signed value asks for one that runs one way, and the magnitude is read back from it. Measured
(BENCHMARKS.md): v10 grades held-out casts along one axis at 0.80-0.83 and across all hues at 0.749
("Where colour-cast grading is lost"), and v5 read casts of one label about twice as strong in green
and magenta as in blue and yellow ("v6 and earlier builds").

Two arms on the same cached trunk features, the branch recipe (``fit_head``, ``branch_head``,
``BranchTrainConfig``'s defaults), each at ``--seeds`` seeds (the recipe's and the next ones):

- ``scalar``: the shipped targets, one intensity per head (the control);
- ``polar``: colour cast as 0.5 + 0.5 t (cos a, sin a), exposure as 0.5 + 0.5 t d (d = -1 under,
  +1 over), the other heads as shipped; read back as 2 |v - 0.5| and 2 |s - 0.5|. The two cast
  columns share colour cast's loss weight (``--cast-weight split``), so every head keeps its
  share of the loss; ``full`` gives each column the head's weight (the first run's).
  ``--polar-heads`` learns only some of the two this way, the others as shipped.

The generator draws a and d but does not store them, so they are recovered by rendering every
training and validation crop again from its seed (each image must equal the stored one byte for
byte, or the script stops); cached per set in ``<set>/bench_polar_v1.npy`` (angle, cast kind,
exposure direction; NaN where the crop has none), beside the set's meta it was recovered from
(``bench_polar_v1.json``): a set rendered again under another meta is recovered again. Each arm is blended with the CNN per head as the
build does it (share on ``MIX_GRID`` with the best mean grading SRCC on the validation sweeps),
then graded on the held-out sets (``test/``); the branch alone is reported too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from branch_colour_stats import add_build_args, blend_and_grade, build_sets, load_set, train_mlp  # noqa: E402

from deqa.baselines import synth  # noqa: E402
from deqa.baselines.branch_train import (  # noqa: E402
    BranchTrainConfig,
    imagenet_branch,
)
from deqa.baselines.degradation_config import EncoderBranchConfig  # noqa: E402

ARMS = ("scalar", "polar")
POLAR_HEADS = ("colour_cast", "exposure")  # the heads whose targets can carry a direction
CACHE = "bench_polar_v1.npy"
_KINDS = {"gains": 0.0, "tint": 1.0}

# --- recovering the directions ----------------------------------------------------------------------
_drawn: dict = {}


def _recording_cast(img, t, rng):
    # The same draws, in the same order, as apply_colour_cast makes when it picks kind and angle.
    kind = rng.choice(["gains", "tint"])
    angle = rng.uniform(0, 2 * np.pi)
    _drawn.update(angle=float(angle), kind=_KINDS[str(kind)])
    return synth.apply_colour_cast(img, t, rng, kind=kind, angle=angle)


def _recording_exposure(img, t, rng):
    d = int(rng.choice([-1, 1]))  # as apply_exposure draws it
    _drawn["dir"] = float(d)
    return synth.apply_exposure(img, t, rng, direction=d)


def _record_chunk(args) -> tuple[int, np.ndarray, list[int]]:
    path, start, stop = args
    meta = json.loads((Path(path) / "meta.json").read_text())
    cfg = synth.SynthConfig.from_dict(meta["config"])
    stored = np.load(Path(path) / "images.npy", mmap_mode="r")
    usable = synth.usable_photos(meta["photos"], cfg)
    synth.DEGRADATIONS["colour_cast"], synth.DEGRADATIONS["exposure"] = _recording_cast, _recording_exposure
    out = np.full((stop - start, 3), np.nan, np.float32)
    mismatched = []
    for j, i in enumerate(range(start, stop)):
        _drawn.clear()
        img, _, _ = synth.render_sample_at(usable, cfg, meta["seed"], i)
        if not np.array_equal(img, stored[i]):
            mismatched.append(i)
        out[j] = [_drawn.get("angle", np.nan), _drawn.get("kind", np.nan), _drawn.get("dir", np.nan)]
    return start, out, mismatched


def directions(path: Path, workers: int) -> np.ndarray:
    """[N, 3] (cast angle, cast kind, exposure direction) of a rendered set, cached."""
    cache, cache_meta = path / CACHE, path / CACHE.replace(".npy", ".json")
    meta = json.loads((path / "meta.json").read_text())
    if cache.is_file() and cache_meta.is_file() and json.loads(cache_meta.read_text()) == meta:
        out = np.load(cache)
        if len(out) == meta["n"]:
            return out
    n = meta["n"]
    out = np.full((n, 3), np.nan, np.float32)
    chunks = [(str(path), s, min(s + 500, n)) for s in range(0, n, 500)]
    with Pool(workers) as pool:
        for start, part, bad in pool.imap_unordered(_record_chunk, chunks):
            if bad:
                raise SystemExit(f"{path}: sample(s) {bad[:5]} render differently from the stored images; "
                                 "this generator is not the one that wrote the set")
            out[start : start + len(part)] = part
    np.save(cache, out)
    cache_meta.write_text(json.dumps(meta))
    return out


# --- targets and read-back ----------------------------------------------------------------------------
def polar_targets(y: np.ndarray, drawn: np.ndarray, heads: tuple[str, ...],
                  polar: tuple[str, ...] = POLAR_HEADS) -> tuple[np.ndarray, list[str]]:
    """Scalar labels [N, H] -> targets with the ``polar`` heads as vector / signed columns (one
    more column with colour cast), and the head each column takes its loss weight from."""
    cols, names = [], []
    for j, h in enumerate(heads):
        t = y[:, j]
        if h == "colour_cast" and h in polar:
            a = np.nan_to_num(drawn[:, 0])
            if np.any(np.isnan(drawn[:, 0]) & (t > 0)):
                raise SystemExit("a cast crop without a recorded angle")
            cols += [0.5 + 0.5 * t * np.cos(a), 0.5 + 0.5 * t * np.sin(a)]
            names += [h, h]
        elif h == "exposure" and h in polar:
            d = np.nan_to_num(drawn[:, 2])
            if np.any(np.isnan(drawn[:, 2]) & (t > 0)):
                raise SystemExit("an exposed crop without a recorded direction")
            cols.append(0.5 + 0.5 * t * d)
            names.append(h)
        else:
            cols.append(t)
            names.append(h)
    return np.stack(cols, 1).astype(np.float32), names


def polar_readout(logits: np.ndarray, heads: tuple[str, ...], polar: tuple[str, ...] = POLAR_HEADS) -> np.ndarray:
    """Logits of :func:`polar_targets`' columns -> per-head intensity logits [N, H] (magnitudes as
    logits, to blend)."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    out, c = [], 0
    for h in heads:
        if h == "colour_cast" and h in polar:
            out.append(2 * np.hypot(p[:, c] - 0.5, p[:, c + 1] - 0.5))
            c += 2
        elif h == "exposure" and h in polar:
            out.append(2 * np.abs(p[:, c] - 0.5))
            c += 1
        else:
            out.append(p[:, c])
            c += 1
    q = np.clip(np.stack(out, 1), 1e-4, 1 - 1e-4)
    return np.log(q / (1 - q)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap)
    ap.add_argument("--seeds", type=int, default=2, help="MLP seeds per arm (the recipe's seed and the next ones)")
    ap.add_argument("--polar-heads", nargs="+", choices=POLAR_HEADS, default=list(POLAR_HEADS),
                    help="the heads the polar arm learns with their direction (the others as shipped)")
    ap.add_argument("--cast-weight", choices=("split", "full"), default="split",
                    help="polar arm: the two cast columns share colour cast's loss weight (split) or each get it (full)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    build = Path(args.build)
    cnn, heads, train_sets, val_set, val_sweeps, held_sweeps, mixed_set = build_sets(ap, build, args.train_data, args.cnn)
    for h in ("colour_cast", "exposure"):
        if h not in heads:
            ap.error(f"{args.cnn}: the CNN has no {h} head")
    trunk = imagenet_branch(EncoderBranchConfig(), len(heads), cnn.cfg.image_size)

    def load(path: Path, with_cnn: bool = True, with_dirs: bool = False) -> dict:
        d = load_set(path, trunk, cnn if with_cnn else None)
        if with_dirs:
            d["dirs"] = directions(path, args.threads)
        return d

    train = [load(p, with_cnn=False, with_dirs=True) for p in train_sets]
    val = load(val_set, with_dirs=True)
    vsw = [load(p) for p in val_sweeps]
    hsw = {p.name: load(p) for p in held_sweeps}
    mixed = load(mixed_set)

    x_tr = np.concatenate([d["trunk"] for d in train])
    y_tr = np.concatenate([d["y"] for d in train])
    dirs_tr = np.concatenate([d["dirs"] for d in train])
    recipe = BranchTrainConfig(cnn=args.cnn, train_data=args.train_data, val_data=str(build / "val"), out_dir=str(build))
    runs = {}
    for arm in ARMS:
        for k in range(args.seeds):
            cfg = dataclasses.replace(recipe, seed=recipe.seed + k)
            if arm == "scalar":
                predict, best, best_epoch = train_mlp(x_tr, y_tr, val["trunk"], val["y"], heads, cfg)
                read = predict
            else:
                polar = tuple(args.polar_heads)
                yp_tr, names = polar_targets(y_tr, dirs_tr, heads, polar)
                yp_va, _ = polar_targets(val["y"], val["dirs"], heads, polar)
                # Split: the two cast columns share the head's weight, so each head keeps its scalar
                # share of the loss; full: each column at the head's weight (the first run's).
                w = [cfg.loss_weights.get(h, 1.0) * (0.5 if names.count(h) == 2 and args.cast_weight == "split" else 1.0)
                     for h in names]
                predict, best, best_epoch = train_mlp(x_tr, yp_tr, val["trunk"], yp_va, tuple(names), cfg, w)

                def read(a, predict=predict, polar=polar):
                    return polar_readout(predict(a), heads, polar)

            run = {"seed": cfg.seed, "best_val_loss": round(best, 5), "best_epoch": best_epoch,
                   **blend_and_grade(read, lambda d: d["trunk"], val, vsw, hsw, mixed, heads, cnn.cfg.normalised_weights())}
            runs.setdefault(arm, []).append(run)
            print(arm, json.dumps(run), flush=True)

    def mean(arm, key, sub=None):
        vals = [r[key][sub] if sub else r[key] for r in runs[arm]]
        return float(np.mean(vals))

    for what, key in (("blended with the CNN", "grading"), ("branch alone", "branch_only_grading")):
        print(f"\nmean of {args.seeds} seed(s), {what}:")
        print("| targets | " + " | ".join(heads) + (" | watermark AUC | overall |" if key == "grading" else ""))
        print("|---|" + "---|" * (len(heads) + (2 if key == "grading" else 0)))
        for arm in ARMS:
            cells = [f"{mean(arm, key, h + ' nuisance'):.3f} / {mean(arm, key, h + ' isolated'):.3f}" for h in heads]
            tail = f" | {mean(arm, 'watermark_auc'):.3f} | {mean(arm, 'overall'):.4f} |" if key == "grading" else ""
            print(f"| {arm} | " + " | ".join(cells) + tail)
    # The adoption rule's quantities (BENCHMARKS.md), to 4 decimals: polar - scalar, blended, seed means.
    delta = {f"{h} {k}": mean("polar", "grading", f"{h} {k}") - mean("scalar", "grading", f"{h} {k}")
             for h in heads for k in ("nuisance", "isolated")}
    rule = {**{f"{h} (mean of nuisance and isolated)": round((delta[f"{h} nuisance"] + delta[f"{h} isolated"]) / 2, 4)
               for h in ("colour_cast", "exposure")},
            "largest drop of another head": round(min(v for k, v in delta.items() if k.split()[0] not in args.polar_heads), 4),
            "overall": round(mean("polar", "overall") - mean("scalar", "overall"), 4)}
    print("\npolar - scalar:", json.dumps(rule))
    if args.out:
        Path(args.out).write_text(json.dumps({"cnn": args.cnn, "train_data": args.train_data, "cast_weight": args.cast_weight,
                                              "polar_heads": args.polar_heads,
                                              "runs": runs, "polar_minus_scalar": rule}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
