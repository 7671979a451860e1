"""An overexposure label calibrated to underexposure's lightness error: a 1-epoch A/B.

    python bench/exposure_label_ab.py --build .cache/build --cnn CNN_FOLDER --work .cache/exp_ab
                                      [--n 30000] [--epochs 1] [--calib-crops 400] [--out exp_ab.json]

The exposure label t means -3.5 t EV when a crop is underexposed and +2.5 t EV when it is
overexposed (``synth.apply_exposure``). Analysis 14 of ``baseline_limits.py`` found v11 grading
underexposure at 0.901 on held-out scenes and overexposure at 0.761, lost at low and middle t.
This bench first measures how far each direction moves a photo's lightness: the mean |dL*|
(CIELAB lightness of each pixel, averaged over the crop, then over ``--calib-crops`` clean crops
of the training scenes) against EV. Then it defines the ``lstar`` label: overexposure at t gets
the EV whose mean |dL*| equals underexposure's at the same t (the measured curves, interpolated),
so a t means the same lightness error both ways. Underexposure is unchanged.

Arms (the same crops and plans, and every draw up to the exposure; only overexposed crops differ):

- ``v3``: the shipped label (protocol deqa-heldout-v3), the control;
- ``lstar``: the calibrated overexposure label.

Each arm: the CNN (``--cnn``, CNN only) trained on for ``--epochs`` epoch(s) by the build's round
recipe on ``--n`` fresh crops of the training photos, drawn as the build's training set is (render
seed 107), validated on the build's
validation draw (seed 102) rendered by the arm's generator. Then every model, the starting CNN
included, grades (SRCC with t, CNN only) the held-out exposure sweeps (the build's
``test/sweep_exposure`` and ``test/iso_exposure`` photos and seeds) as each arm draws them: all
crops, and the over- and underexposed ones apart (a crop is overexposed where the arms' images
differ). The starting CNN's row separates what the arm's other EVs do to the test from what
training on them does. Checks before any training: the ``v3`` arm's validation set equals the
build's byte for byte, and the ``lstar`` arm's sets differ from v3's in exposed crops only.
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

from label_ab import (  # noqa: E402
    check_control,
    checked_inputs,
    differ_only_where_labelled,
    render_arm,
    sweep_predictions,
    train_arms,
)

from deqa.baselines import synth  # noqa: E402
from deqa.metrics import srcc  # noqa: E402

ARMS = ("v3", "lstar")
SWEEPS = ("sweep_exposure", "iso_exposure")
UNDER_EV, OVER_EV = 3.5, 2.5  # synth.apply_exposure's range at t = 1 (checked against it below)
T_GRID = np.linspace(0.0, 1.0, 41)
EV_GRID = np.arange(0.0, 6.0001, 0.0625)  # overexposure measured up to +6 EV
_RGB_TO_Y = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)  # Rec. 709 luminance of linear RGB


def lightness(img: np.ndarray) -> np.ndarray:
    """CIELAB L* (0-100) of each pixel of a float RGB image in [0, 1], linearised by the
    generator's own gamma (2.2)."""
    y = np.power(img.astype(np.float64), 2.2) @ _RGB_TO_Y
    f = np.where(y > (6 / 29) ** 3, np.cbrt(y), y / (3 * (6 / 29) ** 2) + 4 / 29)
    return 116.0 * f - 16.0


def _exposed(img: np.ndarray, ev: float) -> np.ndarray:
    """``img`` at ``ev`` by the generator's own arithmetic (t = ev / range, direction fixed: no draw)."""
    if ev < 0:
        return synth.apply_exposure(img, -ev / UNDER_EV, None, direction=-1)
    return synth.apply_exposure(img, ev / OVER_EV, None, direction=1)


def calibrate(photos: list[str], cfg: synth.SynthConfig, n_crops: int, seed: int = 0) -> dict:
    """Mean |dL*| of under- and overexposure, and the overexposure EV of each t of ``T_GRID``
    whose mean |dL*| is underexposure's at that t."""
    usable = synth.usable_photos(photos, cfg)
    rng = np.random.default_rng(seed)
    crops = [synth.textured_crop(synth._photo(usable[int(rng.integers(len(usable)))]), rng, cfg)[0] for _ in range(n_crops)]
    # The generator's range, checked: t = 1 underexposed is -UNDER_EV, overexposed +OVER_EV.
    probe = crops[0]
    for direction, ev in ((-1, -UNDER_EV), (1, OVER_EV)):
        lin = np.power(probe, 2.2) * 2.0**ev
        expect = np.power(np.clip(lin, 0.0, 1.0), 1 / 2.2).astype(np.float32)
        if not np.allclose(synth.apply_exposure(probe, 1.0, None, direction=direction), expect, atol=1e-6):
            raise SystemExit(f"synth.apply_exposure no longer spans {ev:+} EV at t = 1; update UNDER_EV / OVER_EV")
    base = [lightness(c) for c in crops]

    def mean_dl(ev: float) -> float:
        return float(np.mean([np.abs(lightness(_exposed(c, ev)) - b).mean() for c, b in zip(crops, base, strict=True)]))

    dl_under = np.array([mean_dl(-UNDER_EV * t) for t in T_GRID])
    dl_over = np.array([mean_dl(ev) for ev in EV_GRID])
    if np.any(np.diff(dl_over) <= 0):
        raise SystemExit("mean |dL*| of overexposure is not increasing in EV on these crops; cannot invert it")
    if dl_under[-1] > dl_over[-1]:
        raise SystemExit(f"underexposure at t = 1 moves L* by {dl_under[-1]:.1f}, more than +{EV_GRID[-1]} EV does")
    ev_over = np.interp(dl_under, dl_over, EV_GRID)
    return {"crops": n_crops, "seed": seed, "t": T_GRID.round(4).tolist(), "dl_under": dl_under.round(4).tolist(),
            "ev": EV_GRID.round(4).tolist(), "dl_over": dl_over.round(4).tolist(),
            "dl_over_v3": [round(float(np.interp(OVER_EV * t, EV_GRID, dl_over)), 4) for t in T_GRID],
            "ev_over_lstar": ev_over.round(4).tolist()}


_CURVE: tuple[np.ndarray, np.ndarray] | None = None  # (t, EV) of the lstar arm, set before its renders


def lstar_exposure(img, t, rng, direction=None):
    """``synth.apply_exposure`` with the calibrated overexposure EV: the same direction draw, and
    the generator's arithmetic at the EV of :data:`_CURVE`."""
    direction = direction if direction is not None else int(rng.choice([-1, 1]))
    if direction < 0:
        return synth.apply_exposure(img, t, rng, direction=-1)
    return synth.apply_exposure(img, float(np.interp(t, *_CURVE)) / OVER_EV, rng, direction=1)


def main(argv: list[str] | None = None) -> int:
    global _CURVE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="work folder of scripts/build_default_model.sh (protocol v3 sets)")
    ap.add_argument("--cnn", required=True, help="degradation-model folder whose CNN every arm starts from")
    ap.add_argument("--work", required=True, help="folder for the arms' sets and models (resumed when rerun)")
    ap.add_argument("--n", type=int, default=30000, help="training crops per arm")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--calib-crops", type=int, default=400, help="clean training crops the lightness curves average over")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and render workers")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    build, work = Path(args.build), Path(args.work)
    metas, heads, col = checked_inputs(build, args.cnn, SWEEPS, "exposure", ap.error)

    val_cfg = synth.SynthConfig.from_dict(metas["val"]["config"])
    calib = calibrate(metas["val"]["photos"], val_cfg, args.calib_crops)
    _CURVE = (np.asarray(calib["t"]), np.asarray(calib["ev_over_lstar"]))
    print("| t | underexposure EV | mean dL* | overexposure EV, v3 | mean dL* | lstar EV |")
    print("|---|---|---|---|---|---|")
    for i in range(0, len(T_GRID), 4):
        print(f"| {T_GRID[i]:.1f} | {-UNDER_EV * T_GRID[i]:.2f} | {calib['dl_under'][i]:.2f} | {OVER_EV * T_GRID[i]:+.2f} | "
              f"{calib['dl_over_v3'][i]:.2f} | {calib['ev_over_lstar'][i]:+.2f} |", flush=True)

    sets: dict[str, dict[str, Path]] = {}
    for arm in ARMS:
        root = work / arm
        root.mkdir(parents=True, exist_ok=True)
        generator = {
            "v3": "the shipped exposure label (protocol deqa-heldout-v3)\n",
            # The curve itself: the lstar sets carry v3's meta, so only this stamp tells a set
            # rendered with another calibration (another --calib-crops) from this run's.
            "lstar": "overexposure EV calibrated to underexposure's mean |dL*| (bench/exposure_label_ab.py); "
                     "the meta says v3 but the overexposed crops are not: bench only\n"
                     f"t -> EV: {json.dumps([calib['t'], calib['ev_over_lstar']])}\n",
        }[arm]
        stamp = root / "GENERATOR.txt"
        if stamp.is_file() and stamp.read_text() != generator:
            raise SystemExit(f"{stamp}: the sets and model here were made with another generator or calibration; "
                             "use a new --work folder")
        stamp.write_text(generator)
        variant = dict(head="exposure", variant=lstar_exposure) if arm == "lstar" else {}
        sets[arm] = render_arm(metas, root, SWEEPS, args.n, args.threads, **variant)
    check_control(build, sets["v3"]["val"])
    checks, over = {}, {}
    for name in ("val", *SWEEPS):
        diff, exposed, other = differ_only_where_labelled(sets["v3"][name], sets["lstar"][name], col)
        checks[name] = {"exposed_differ": exposed, "unexposed_differ": other}
        if other or not exposed:
            raise SystemExit(f"lstar {name}: {exposed} exposed and {other} unexposed crops differ from v3's; "
                             "the arm must change the exposure and nothing else")
        over[name] = diff
    print("checks (crops that differ: the overexposed ones)", json.dumps(checks), flush=True)

    models, val_loss, recipe = train_arms(sets, ARMS, work, args.cnn, epochs=args.epochs, threads=args.threads,
                                          bench="exposure")

    grading: dict[str, dict[str, float]] = {}
    for model_name, preds in sweep_predictions(models, sets, ARMS, SWEEPS, col):
        g = grading[model_name] = {}
        for (arm, s), (p, t) in preds.items():
            g[f"{arm} {s}"] = round(srcc(p, t), 4)
            g[f"{arm} {s} over"] = round(srcc(p[over[s]], t[over[s]]), 4)
            g[f"{arm} {s} under"] = round(srcc(p[~over[s]], t[~over[s]]), 4)
        print(model_name, json.dumps(grading[model_name]), flush=True)

    print("\nexposure grading, CNN only (nuisance / isolated; all, overexposed, underexposed), rows: model, columns: label")
    print("| model | " + " | ".join(f"{a}: all | {a}: over | {a}: under" for a in ARMS) + " |")
    print("|---|" + "---|" * 3 * len(ARMS))
    for model_name in models:
        g = grading[model_name]
        cells = [f"{g[f'{a} sweep_exposure{k}']:.3f} / {g[f'{a} iso_exposure{k}']:.3f}" for a in ARMS for k in ("", " over", " under")]
        print(f"| {model_name} | " + " | ".join(cells) + " |")
    own = {a: (grading[a][f"{a} sweep_exposure"] + grading[a][f"{a} iso_exposure"]) / 2 for a in ARMS}
    print(f"\nown-label grading, mean of nuisance and isolated: v3 {own['v3']:.4f}, lstar {own['lstar']:.4f}, "
          f"difference {own['lstar'] - own['v3']:+.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "cnn": args.cnn, "build": str(build), "n": args.n, "epochs": args.epochs, "calibration": calib, "checks": checks,
            "overexposed": {s: int(over[s].sum()) for s in SWEEPS}, "val_loss": val_loss, "grading": grading,
            "own_label_mean": own, "recipe": {k: v for k, v in vars(recipe).items()
                                              if k not in ("train_data", "val_data", "out_dir", "model_id")}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
