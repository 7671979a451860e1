"""Does averaging several encoder-branch MLPs (seeds) grade unseen scenes better than one?

    python bench/branch_ensemble.py --build .cache/build --cnn CNN_FOLDER
                                    [--seeds 0 1 2 3] [--train-data train train_branch] [--out ensemble.json]

Two retrains of the branch MLP by the same recipe differ by about 0.015 in colour cast and exposure
grading (BENCHMARKS.md): part of what a single MLP gets wrong on a scene it never saw is its own
seed's. Averaging the logits of MLPs trained from different seeds removes that part. This bench
trains one MLP per seed by the branch recipe (``train_mlp``: ``BranchTrainConfig``'s defaults, best
validation loss kept) on the same cached trunk features, and grades, each blended with the CNN as
the build does it (``blend_and_grade``: the mix chosen on the validation sweeps):

- ``single``: the first seed's MLP alone (the control);
- ``mean of k``: the mean logit of the first k seeds' MLPs, for k = 2, 4, ... up to all seeds.

Each arm also reports a bound no rule for the mix can beat: per head, the held-out grading (mean of
nuisance and isolated) at the mix that is best *on the held-out sets themselves* (``oracle_mix``),
beside the grading at the mix the validation sweeps chose. It is read from the test sets, so it is
an analysis of how much a better mix rule could gain, never a choice.

The mean of two MLPs' logits is itself one MLP of the branch's shape, twice as wide (its middle
layer block-diagonal, its last layer the halved concatenation), so an ensemble of two could ship
without a runtime change; its weights would cost another ~1.75 MB (float32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from branch_colour_stats import (  # noqa: E402
    add_build_args,
    blend_and_grade,
    build_sets,
    grading_row,
    load_set,
    train_mlp,
)

from deqa.baselines.branch_train import MIX_GRID, BranchTrainConfig, imagenet_branch  # noqa: E402
from deqa.baselines.degradation_config import EncoderBranchConfig, mix_logits  # noqa: E402
from deqa.metrics import srcc  # noqa: E402


def ensemble_sizes(n_seeds: int) -> list[int]:
    """1, 2, 4, ... and n_seeds itself: the ensembles graded for n_seeds trained MLPs."""
    sizes, k = [], 1
    while k < n_seeds:
        sizes.append(k)
        k *= 2
    return sizes + [n_seeds]


def mean_logits(predictors):
    """One reader: the mean of the predictors' logits."""
    def read(features):
        return np.mean([p(features) for p in predictors], axis=0)
    return read


def oracle_mix(read, x, hsw: dict[str, dict], heads: tuple[str, ...], chosen: dict[str, float]) -> dict[str, dict]:
    """Per head, the held-out grading (mean over the head's held-out sweeps) at the chosen mix and
    at the grid's best mix on those same sets: an upper bound for any mix rule, not a choice."""
    out = {}
    for j, h in enumerate(heads):
        sets = [(d["cnn"][:, j], read(x(d))[:, j], d["y"][:, j]) for d in hsw.values() if d["head"] == h]
        curve = [float(np.mean([srcc(mix_logits(c, b, m), y) for c, b, y in sets])) for m in MIX_GRID]
        best = int(np.argmax(curve))
        out[h] = {"chosen": chosen[h], "at_chosen": round(curve[int(np.argmin(np.abs(MIX_GRID - chosen[h])))], 4),
                  "best_mix": float(MIX_GRID[best]), "at_best": round(curve[best], 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="one MLP per seed; the first is the control")
    args = ap.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds) or len(args.seeds) < 2:
        ap.error(f"--seeds: give at least two different seeds, got {args.seeds}")
    torch.set_num_threads(args.threads)

    build = Path(args.build)
    cnn, heads, train_sets, val_set, val_sweeps, held_sweeps, mixed_set = build_sets(ap, build, args.train_data, args.cnn)
    trunk = imagenet_branch(EncoderBranchConfig(), len(heads), cnn.cfg.image_size).eval()
    train = [load_set(p, trunk) for p in train_sets]
    val = load_set(val_set, trunk, cnn)
    vsw = [load_set(p, trunk, cnn) for p in val_sweeps]
    hsw = {p.name: load_set(p, trunk, cnn) for p in held_sweeps}
    mixed = load_set(mixed_set, trunk, cnn)
    x_tr, y_tr = np.concatenate([d["trunk"] for d in train]), np.concatenate([d["y"] for d in train])
    print(f"{len(x_tr)} training crops, {x_tr.shape[1]} features", flush=True)

    recipe = BranchTrainConfig(cnn=args.cnn, train_data=args.train_data, val_data=str(val_set), out_dir=str(build))
    predictors, mlps = [], []
    for seed in args.seeds:
        t0 = time.perf_counter()
        predict, best, best_epoch = train_mlp(x_tr, y_tr, val["trunk"], val["y"], heads, replace(recipe, seed=seed))
        predictors.append(predict)
        mlps.append({"seed": seed, "best_val_loss": round(best, 5), "best_epoch": best_epoch,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print("mlp", json.dumps(mlps[-1]), flush=True)

    weights = cnn.cfg.normalised_weights()
    results = {}
    for k in ensemble_sizes(len(args.seeds)):
        name = "single" if k == 1 else f"mean of {k}"
        read = mean_logits(predictors[:k])
        results[name] = {"seeds": args.seeds[:k], **blend_and_grade(read, lambda d: d["trunk"], val, vsw, hsw, mixed, heads, weights)}
        results[name]["oracle_mix"] = oracle_mix(read, lambda d: d["trunk"], hsw, heads, results[name]["mix"])
        print(name, json.dumps(results[name]), flush=True)

    print("| MLPs | " + " | ".join(heads) + " | watermark AUC | overall |")
    print("|---|" + "---|" * (len(heads) + 2))
    for name, r in results.items():
        print(grading_row(name, r, heads))
    print("held-out grading (mean of nuisance and isolated) at the chosen mix -> at the best mix on the held-out sets (a bound):")
    for name, r in results.items():
        print(f"  {name}: " + ", ".join(f"{h} {o['at_chosen']:.4f} ({o['chosen']:.2f}) -> {o['at_best']:.4f} ({o['best_mix']:.2f})"
                                        for h, o in r["oracle_mix"].items()))
    base = results["single"]["grading"]
    for name, r in results.items():
        if name == "single":
            continue
        g = r["grading"]
        delta = {h: round((g[h + " nuisance"] + g[h + " isolated"] - base[h + " nuisance"] - base[h + " isolated"]) / 2, 4)
                 for h in heads}
        worst = min(g[key] - base[key] for key in base)
        print(f"{name} - single, mean of nuisance and isolated: {json.dumps(delta)}; largest drop {worst:+.4f}; "
              f"overall {r['overall'] - results['single']['overall']:+.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"cnn": args.cnn, "train_data": args.train_data, "mlps": mlps,
                                              "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
