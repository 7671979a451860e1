"""How does the encoder branch's held-out grading grow with the number of training scenes?

    python bench/branch_scene_curve.py --build .cache/build --cnn CNN_FOLDER
                                       [--train-data train train_branch] [--draws 2] [--out scene_curve.json]

Every build's notes name more photographed scenes as the lever for colour cast and exposure (the
scene gap). This measures the lever's slope on what exists: the branch MLP (the library's recipe,
``train_mlp``) trained on the cached trunk features of crops from a random 1/8, 1/4, 1/2 and all of
the training scenes, always on the same number of crops (as many as the smallest subset has, drawn
at random from the subset's crops), so the curve is scenes, not crops; each draw's subsets are
nested (prefixes of one random order of the scenes). The best epoch is chosen on the validation
crops of the subset's own scenes. Graded alone (the branch's share 1: the CNN in the blend saw
every scene) on the held-out sweeps, mean of nuisance and isolated per head, ``--draws`` random
orders. A least-squares line of grading against log2(scenes) per head gives the slope per
doubling and, extrapolated, the scenes at which the line would reach 0.9: an extrapolation at this
crop budget (far below the shipped branch's 60,000 crops), not a measurement. ``--cnn`` gives the
heads and the image size and checks the sets; its logits are not used.
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
sys.path.insert(0, str(ROOT / "bench"))

from branch_colour_stats import add_build_args, build_sets, load_set, train_mlp  # noqa: E402

from deqa.baselines.branch_train import BranchTrainConfig, imagenet_branch  # noqa: E402
from deqa.baselines.degradation_config import EncoderBranchConfig  # noqa: E402
from deqa.baselines.photos import read_photo_index  # noqa: E402
from deqa.metrics import srcc  # noqa: E402

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
GOAL = 0.9


def crop_scenes(path: Path, scene_of: dict[str, str]) -> np.ndarray:
    """The scene of each crop of a rendered set (its photo, from the set's own record);
    ``scene_of`` is keyed by resolved photo paths."""
    meta = json.loads((path / "meta.json").read_text())
    sources = json.loads((path / "progress.json").read_text())["sources"]
    if len(sources) != meta["n"]:
        raise SystemExit(f"{path}: {len(sources)} crops recorded of {meta['n']}; render the set to the end first")
    photos = [str(Path(p).resolve()) for p in meta["photos"]]
    missing = sorted({photos[k] for k in set(sources)} - set(scene_of))
    if missing:
        raise SystemExit(f"{path}: photos not in the build's photo index, e.g. {missing[0]}")
    return np.array([scene_of[photos[k]] for k in sources])


def extrapolate(scenes: list[int], grading: list[float]) -> dict:
    """Slope per doubling of scenes, and where the line reaches GOAL ("reached" when the largest
    subset already grades at GOAL or above; None when the line never gets there)."""
    slope, icpt = np.polyfit(np.log2(scenes), grading, 1)
    top = max(scenes)
    if np.mean([g for s, g in zip(scenes, grading, strict=True) if s == top]) >= GOAL:
        at = "reached"
    else:
        e = (GOAL - icpt) / slope if slope > 0 else np.inf
        at = round(float(2**e)) if e < 60 else None
    return {"per_doubling": round(float(slope), 4), "scenes_for_goal": at}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap)
    ap.add_argument("--draws", type=int, default=2, help="random scene subsets per size")
    args = ap.parse_args(argv)
    if args.draws < 1:
        ap.error("--draws must be >= 1")
    torch.set_num_threads(args.threads)

    build = Path(args.build)
    cnn, heads, train_sets, val_set, _, held_sweeps, _ = build_sets(ap, build, args.train_data, args.cnn)
    index = build / "photos" / "photos.json"
    if not index.is_file():
        ap.error(f"{index}: missing (the build's photo step writes it)")
    scene_of = {str(Path(e["file"]).resolve()): e["group"] for e in read_photo_index(build / "photos", "train")}
    trunk = imagenet_branch(EncoderBranchConfig(), len(heads), cnn.cfg.image_size)
    train = [load_set(p, trunk) for p in train_sets]
    x = np.concatenate([d["trunk"] for d in train])
    y = np.concatenate([d["y"] for d in train])
    scenes = np.concatenate([crop_scenes(p, scene_of) for p in train_sets])
    val = load_set(val_set, trunk)
    val_scenes = crop_scenes(val_set, scene_of)
    held = {p.name: load_set(p, trunk) for p in held_sweeps}
    names = np.array(sorted(set(scenes)))
    recipe = BranchTrainConfig(cnn=args.cnn, train_data=args.train_data, val_data=str(val_set), out_dir=str(build))

    subsets = []
    for d in range(args.draws):
        order = np.random.default_rng([0, d]).permutation(names)  # nested subsets: prefixes of one order
        subsets += [(f, d, order[: max(1, round(f * len(names)))]) for f in FRACTIONS]
    n_crops = min(int(np.isin(scenes, s).sum()) for _, _, s in subsets)
    rows = []
    for i, (f, draw, chosen) in enumerate(subsets):
        pool = np.flatnonzero(np.isin(scenes, chosen))
        pick = np.sort(np.random.default_rng([1, i]).choice(pool, size=n_crops, replace=False))
        keep = np.isin(val_scenes, chosen)  # the best epoch is chosen on the subset's own scenes
        predict, best, _ = train_mlp(x[pick], y[pick], val["trunk"][keep], val["y"][keep], heads, recipe)
        grading = {}
        for h in heads:
            j = heads.index(h)
            sets = [d for d in held.values() if d["head"] == h]
            grading[h] = round(float(np.mean([srcc(predict(d["trunk"])[:, j], d["y"][:, j]) for d in sets])), 4)
        rows.append({"fraction": f, "draw": draw, "scenes": len(chosen), "crops": n_crops, "val_crops": int(keep.sum()),
                     "best_val_loss": round(best, 5), "grading": grading})
        print(json.dumps(rows[-1]), flush=True)
        if args.out:  # after every MLP: an interrupted run keeps what it measured
            Path(args.out).write_text(json.dumps({"cnn": args.cnn, "train_data": args.train_data, "crops": n_crops,
                                                  "rows": rows}, indent=2) + "\n")

    fits = {h: extrapolate([r["scenes"] for r in rows], [r["grading"][h] for r in rows]) for h in heads}
    print(f"\nbranch alone, held-out grading (mean of nuisance and isolated), {n_crops} crops per MLP, "
          f"{args.draws} scene draw(s) per size")
    print("| scenes | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for f in FRACTIONS:
        rs = [r for r in rows if r["fraction"] == f]
        print(f"| {rs[0]['scenes']} | " + " | ".join(f"{np.mean([r['grading'][h] for r in rs]):.3f}" for h in heads) + " |")
    print("| per doubling (fit) | " + " | ".join(f"{fits[h]['per_doubling']:+.3f}" for h in heads) + " |")
    print(f"| scenes at {GOAL} (extrapolated) | " + " | ".join(str(fits[h]['scenes_for_goal']) for h in heads) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"cnn": args.cnn, "train_data": args.train_data, "crops": n_crops, "rows": rows,
                                              "fits": fits}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
