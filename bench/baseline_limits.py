"""What limits the built-in degradation model: the measurements behind BENCHMARKS.md "What limits it".

    python bench/baseline_limits.py --build .cache/build [--model M] [--compare M2] [--only A,B] [--out limits.json]

``--build`` is the work folder of ``scripts/build_default_model.sh`` (photos/, val/, test/ with the
mixed set and the ``sweep_*`` / ``iso_*`` sets). The script renders what the build does not: the
same isolated sweeps from the *training* scenes (``seen_iso_<head>``, 500 crops each, into the
build folder; resumable like every rendered set), then reports, per model:

1. Seen vs unseen scenes: isolated grading SRCC on training-scene crops (never trained on: other
   crops) against the held-out scenes' sets. A large gap means more scenes, not more epochs. And
   how much of the held-out error is a per-scene offset rather than scatter within a scene.
2. Colour statistics as a colour-cast grader: SRCC of the gray-world deviation and of the
   opponent-colour mean with the true cast, seen and unseen (how far a scene-blind rule gets).
3. Inference tricks: horizontal-flip averaging and a per-head isotonic calibration fitted on the
   validation set, read on the mixed set's overall SRCC and the colour-cast sweep; and the
   overall SRCC with one head's prediction replaced by the truth (which head costs the most).
4. Gray-edge white balance of the source photos (the fix that was considered for colour cast):
   its per-photo deviation from neutral.
5. Colour-cast response by cast hue: the mean colour-cast intensity predicted on 120 clean
   held-out crops given a cast of fixed kind, intensity and hue (six hues): equal intensities
   should read equal whatever the hue, or the grading SRCC pays for it.
6. Colour-cast label vs perceived strength: on the same clean crops, casts of random kind, hue
   and intensity t; SRCC of the prediction with t and with the cast's mean CIELAB chroma shift
   (Delta E*ab over a/b, per pixel, against the clean crop). If the model tracked the perceived
   shift much better than t, relabelling casts on a perceptual scale would lift its grading.
7. Watermark grading per layout: on the same clean crops, each of the four layouts at a random
   intensity; SRCC of the prediction with t within one layout, and the mean prediction per layout
   (one label spans a faint full-frame tiling and a small corner mark).
8. Watermark label vs rendered strength: on the same clean crops, marks of random layout and
   intensity t; SRCC of the prediction with t and with what the mark measurably changed (mean
   absolute luma change over the image, and the share of pixels changed by more than 2%). If the
   model tracked the rendered change much better than t, the label (not the model) would be what
   caps watermark grading, and a label on rendered strength would lift it.
9. Watermark size spread: per layout, the same marks (word, font, place, opacity, intensity t)
   drawn at the generator's random size factor and with that spread removed (``size_jitter`` 0:
   every mark of one t at one size); grading SRCC with t for both. The gain is what the random
   size costs the grading, an upper bound on what tying the size to t in the generator can buy.
10. Colour-cast grading per opponent axis, seen vs unseen: casts of random kind and intensity
   whose hue lies within 30 degrees of either end of one axis (red-cyan, green-magenta,
   blue-yellow), on 120 clean crops of the held-out scenes and 120 clean crops of the training
   scenes (other crops than the model trained on); grading SRCC with t per axis and scene pool.
   Daylight itself varies along blue-yellow, so a scene the model has never seen can carry such a
   shift as content: if that axis holds the scene gap, the limit is the reference-free judgement,
   not the model.
11. Watermark grading with the mark's word, font and size held fixed: 360 marks of random
   layout and intensity t on the 120 clean held-out crops, drawn as the generator does, then
   with the same draws but one word ("SAMPLE"), one font (DejaVu Sans), both, and both without the
   size spread; grading SRCC with t for each. What a condition gains over "as generated" is what
   that factor's variety costs the grading; what is left with all three fixed is the layout, the
   placement, the shade and the background.
12. Throughput of the frozen EfficientNet-Lite0 encoder (``FrozenEncoder.embed``) at 224 px, the
   candidate second model for "what colour should this be".
13. Ink-matched watermarks (``synth --watermark-ink``), the generator alone, no model: the same
   360 draws as 11 on the clean held-out crops, drawn as the v3 generator does and ink-matched;
   per layout, the SRCC of t with what the mark measurably changed (mean absolute luma change),
   and the spread (std / mean) of that change over the layout's draws at one t (0.5): how much of
   the label's meaning the word, font, size, place and background still leave open; and the share
   of ink-matched marks whose opacity hit the clip (under-inked), as drawn and all at t = 1.
14. Exposure by direction, seen vs unseen: each of the 120 clean crops of the held-out scenes and of
   the training scenes at two random intensities t, once under- and once overexposed (the same t
   both ways); grading SRCC with t within each direction and over both pooled, the mean prediction
   and the grading per direction within each third of t, and the mean on the clean crops. If the
   directions grade well apart but read differently at one t, their scales disagree, and the
   pooled grading (what the sweeps measure) pays for it, as colour cast pays for its hues (10);
   the thirds say at which strengths a direction is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deqa.baselines import builtin_model_dir  # noqa: E402
from deqa.baselines.degradation import load_degradation_model, model_watermark_ink  # noqa: E402
from deqa.baselines.degradation_train import predict_intensities  # noqa: E402
from deqa.baselines.photos import read_photo_index  # noqa: E402
from deqa.baselines.synth import (  # noqa: E402
    WATERMARK_LAYOUTS,
    SynthConfig,
    apply_colour_cast,
    apply_exposure,
    apply_watermark,
    find_fonts,
    load_synth_dataset,
    render_dataset,
    set_watermark_ink,
)
from deqa.metrics import srcc  # noqa: E402

HEADS = ("colour_cast", "blur", "watermark", "noise", "jpeg", "exposure")


def rho(a, b) -> float:
    """Spearman correlation to 3 decimals (NaN for a constant input, as the reports always showed it)."""
    from scipy.stats import spearmanr

    return round(float(spearmanr(a, b)[0]), 3)


# Whether the build's sets draw ink-matched watermarks (its test/mixed/meta.json, set in main): every
# watermark this script draws, and the seen sets it renders, follow the build's protocol.
_INK = [False]


def _seen_sets(build: Path) -> dict[str, Path]:
    """Isolated sweeps of the training scenes, rendered as the build renders its held-out ``iso_*``."""
    photos = [e["file"] for e in read_photo_index(build / "photos", "train")]
    out = {}
    for i, h in enumerate(HEADS):
        cfg = SynthConfig(size=224, sweep=h, count_probs=(1.0,), watermark_ink=_INK[0])  # = synth --sweep h --no-nuisance
        out[h] = render_dataset(photos, build / f"seen_iso_{h}", 500, cfg, seed=130 + i, workers=2, progress=False)
    return out


def _grading(model, sets: dict[str, Path]) -> dict[str, float]:
    res = {}
    for h, path in sets.items():
        ims, labels, _ = load_synth_dataset(path)
        j = list(model.cfg.heads).index(h)
        res[h] = round(srcc(predict_intensities(model, ims)[:, j], labels[:, j]), 4)
    return res


def _scene_share(model, sets: dict[str, Path]) -> dict[str, float]:
    """Per head: the fraction of the residual variance (prediction minus a linear fit on the true
    intensity) that is a per-scene offset. Near 1: the scene decides the error (more scenes help);
    near 0: the error scatters within each scene (the generator or the model is at fault)."""
    res = {}
    for h, path in sets.items():
        ims, labels, _ = load_synth_dataset(path)
        scene = np.asarray(json.loads((Path(path) / "progress.json").read_text())["sources"])
        j = list(model.cfg.heads).index(h)
        pred, true = predict_intensities(model, ims)[:, j], labels[:, j]
        resid = pred - np.polyval(np.polyfit(true, pred, 1), true)
        offset = np.zeros_like(resid)
        for k in np.unique(scene):
            offset[scene == k] = resid[scene == k].mean()
        res[h] = round(float(offset.var() / resid.var()), 3)
    return res


def _colour_stats(path: Path) -> dict[str, float]:
    ims, labels, _ = load_synth_dataset(path)
    j = HEADS.index("colour_cast")
    x = np.asarray(ims, dtype=np.float32) / 255.0
    mean = x.reshape(len(x), -1, 3).mean(1)
    gray_world = np.linalg.norm(mean / mean.mean(1, keepdims=True) - 1.0, axis=1)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    opponent = np.hypot((r - g).mean((1, 2)), ((r + g) / 2 - b).mean((1, 2)))
    return {"gray_world": round(srcc(gray_world, labels[:, j]), 4), "opponent": round(srcc(opponent, labels[:, j]), 4)}


def _flipped(model, ims) -> np.ndarray:
    mirror = np.ascontiguousarray(np.asarray(ims)[:, :, ::-1])
    return (predict_intensities(model, ims) + predict_intensities(model, mirror)) / 2


def _tricks(model, build: Path) -> dict[str, float]:
    from sklearn.isotonic import IsotonicRegression

    w = np.asarray(model.cfg.normalised_weights())
    v_ims, v_labels, _ = load_synth_dataset(build / "val")
    m_ims, m_labels, _ = load_synth_dataset(build / "test" / "mixed")
    v_pred, m_pred = predict_intensities(model, v_ims), predict_intensities(model, m_ims)

    def overall(pred):
        return round(srcc(1.0 - pred @ w, -(m_labels @ w)), 4)

    knots = np.linspace(0.0, 1.0, 21)
    calibrated = np.empty_like(m_pred)
    for j in range(m_pred.shape[1]):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(v_pred[:, j], v_labels[:, j])
        # A little of the identity keeps the map strictly increasing: per-head ranks stay as they are.
        calibrated[:, j] = np.interp(m_pred[:, j], knots, 0.98 * iso.predict(knots) + 0.02 * knots)
    s_ims, s_labels, _ = load_synth_dataset(build / "test" / "sweep_colour_cast")
    j = list(model.cfg.heads).index("colour_cast")
    # Where the overall SRCC is lost: the same mixed set with one head's prediction replaced by
    # its true intensity (an oracle for that head), per head.
    oracle = {}
    for k, h in enumerate(model.cfg.heads):
        q = m_pred.copy()
        q[:, k] = m_labels[:, k]
        oracle[h] = overall(q)
    return {
        "overall_raw": overall(m_pred),
        "overall_with_one_head_true": oracle,
        "overall_flip_tta": overall(_flipped(model, m_ims)),
        "overall_isotonic": overall(calibrated),
        "colour_cast_sweep_raw": round(srcc(predict_intensities(model, s_ims)[:, j], s_labels[:, j]), 4),
        "colour_cast_sweep_flip_tta": round(srcc(_flipped(model, s_ims)[:, j], s_labels[:, j]), 4),
    }


def _gray_edge(build: Path) -> dict[str, float]:
    """Per photo: max |e_c / mean(e) - 1| of the first-order gray-edge illuminant (Minkowski p = 6)."""
    from PIL import Image
    from scipy import ndimage

    out = {}
    for e in read_photo_index(build / "photos", None):
        with Image.open(e["file"]) as im:
            im = im.convert("RGB")
            im.thumbnail((640, 640))
            lin = (np.asarray(im, dtype=np.float32) / 255.0) ** 2.2
        edges = []
        for c in range(3):
            ch = ndimage.gaussian_filter(lin[..., c], 1.0)
            edges.append(np.hypot(ndimage.sobel(ch, 0), ndimage.sobel(ch, 1)))
        illum = (np.stack(edges, -1).reshape(-1, 3) ** 6).mean(0) ** (1 / 6)
        out[e["group"]] = round(float(np.abs(illum / illum.mean() - 1.0).max()), 3)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


HUES = {"red": 0.0, "yellow": np.pi / 3, "green": 2 * np.pi / 3, "cyan": np.pi, "blue": 4 * np.pi / 3, "magenta": 5 * np.pi / 3}


def _clean_crops(build: Path, split: str, n: int = 120) -> np.ndarray:
    """Clean crops (no degradation) of one split's scenes in [0, 1]: ``clean_heldout`` (seed 140) or ``clean_seen`` (141)."""
    folder, seed = {"heldout": ("clean_heldout", 140), "train": ("clean_seen", 141)}[split]
    photos = [e["file"] for e in read_photo_index(build / "photos", split)]
    path = render_dataset(photos, build / folder, n, SynthConfig(size=224, count_probs=(1.0,)), seed=seed,
                          workers=2, progress=False)
    return np.asarray(load_synth_dataset(path)[0], dtype=np.float32) / 255.0


def _cast_directions(model, clean: np.ndarray) -> dict:
    j = list(model.cfg.heads).index("colour_cast")
    rng = np.random.default_rng(0)  # not drawn from: kind and hue are given

    def mean_pred(x: np.ndarray) -> float:
        return round(float(predict_intensities(model, (x * 255).round().astype(np.uint8))[:, j].mean()), 3)

    out: dict = {"clean": mean_pred(clean)}
    for kind in ("gains", "tint"):
        for t in (0.25, 0.5, 1.0):
            out[f"{kind} t={t}"] = {
                hue: mean_pred(np.stack([apply_colour_cast(c, t, rng, kind=kind, angle=a) for c in clean]))
                for hue, a in HUES.items()
            }
    return out


# Opponent axes by the hue angles of their two ends (apply_colour_cast: 0 red, 2pi/3 green, 4pi/3 blue).
CAST_AXES = {"red-cyan": (0.0, np.pi), "green-magenta": (2 * np.pi / 3, 5 * np.pi / 3),
             "blue-yellow": (4 * np.pi / 3, np.pi / 3)}


def _cast_by_axis(model, pools: dict[str, np.ndarray], per_crop: int = 2) -> dict[str, dict[str, float]]:
    j = list(model.cfg.heads).index("colour_cast")
    out: dict[str, dict[str, float]] = {}
    for k, (axis, ends) in enumerate(CAST_AXES.items()):
        out[axis] = {}
        for pool, clean in pools.items():
            rng = np.random.default_rng(20 + k)  # the same draws for both pools
            ts, casts = [], []
            for c in clean:
                for _ in range(per_crop):
                    t = float(rng.uniform(0.0, 1.0))
                    angle = ends[int(rng.integers(2))] + rng.uniform(-np.pi / 6, np.pi / 6)
                    casts.append((apply_colour_cast(c, t, rng, angle=angle) * 255).round().astype(np.uint8))
                    ts.append(t)
            out[axis][pool] = rho(predict_intensities(model, np.stack(casts))[:, j], ts)
        out[axis]["n_per_pool"] = len(pools["unseen"]) * per_crop
    return out


def _cast_vs_delta_e(model, clean: np.ndarray, per_crop: int = 3) -> dict[str, float]:
    from skimage.color import rgb2lab

    j = list(model.cfg.heads).index("colour_cast")
    rng = np.random.default_rng(11)
    ts, des, casts = [], [], []
    for c in clean:
        lab0 = rgb2lab(c)
        for _ in range(per_crop):
            t = float(rng.uniform(0.0, 1.0))
            x = (apply_colour_cast(c, t, rng) * 255).round().astype(np.uint8)
            lab1 = rgb2lab(x.astype(np.float32) / 255.0)
            des.append(float(np.sqrt(((lab1 - lab0)[..., 1:] ** 2).sum(-1)).mean()))
            ts.append(t)
            casts.append(x)
    pred = predict_intensities(model, np.stack(casts))[:, j]

    return {"n": len(ts), "srcc_pred_vs_t": rho(pred, ts), "srcc_pred_vs_delta_e_ab": rho(pred, des),
            "srcc_t_vs_delta_e_ab": rho(ts, des), "delta_e_ab_per_unit_t_median": round(float(np.median(np.array(des) / np.maximum(ts, 1e-3))), 1)}


def _watermark_by_layout(model, clean: np.ndarray, per_crop: int = 2) -> dict[str, dict[str, float]]:

    j = list(model.cfg.heads).index("watermark")
    rng = np.random.default_rng(12)
    out = {}
    for layout in WATERMARK_LAYOUTS:
        ts, marked = [], []
        for c in clean:
            for _ in range(per_crop):
                t = float(rng.uniform(0.0, 1.0))
                marked.append((apply_watermark(c, t, rng, layout=layout, ink=_INK[0]) * 255).round().astype(np.uint8))
                ts.append(t)
        pred = predict_intensities(model, np.stack(marked))[:, j]
        out[layout] = {"n": len(ts), "srcc": rho(pred, ts), "mean_pred": round(float(pred.mean()), 3)}
    return out


def _encoder_speed(threads: int, batch: int = 32, repeats: int = 3) -> dict[str, float]:
    from deqa.baselines.encoders import EncoderSpec, build_encoder

    torch.set_num_threads(threads)
    enc = build_encoder(EncoderSpec("efficientnet-lite0"))
    x = torch.randn(batch, 3, 224, 224)
    enc.embed(x[:4])
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        enc.embed(x)
        rates.append(batch / (time.perf_counter() - t))
    return {"images_per_s_median": round(float(np.median(rates)), 1), "images_per_s_best": round(max(rates), 1)}


def _watermark_vs_strength(model, clean: np.ndarray, per_crop: int = 3) -> dict:

    j = list(model.cfg.heads).index("watermark")
    rng = np.random.default_rng(13)
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    rows, marked = [], []
    for c in clean:
        y0 = c @ luma
        for _ in range(per_crop):
            t = float(rng.uniform(0.0, 1.0))
            layout = str(rng.choice(list(WATERMARK_LAYOUTS)))
            x = (apply_watermark(c, t, rng, layout=layout, ink=_INK[0]) * 255).round().astype(np.uint8)
            d = np.abs(x.astype(np.float32) / 255.0 @ luma - y0)
            rows.append((t, layout, float(d.mean()), float((d > 0.02).mean())))
            marked.append(x)
    pred = predict_intensities(model, np.stack(marked))[:, j]
    t, layouts, change, share = (np.array([r[i] for r in rows]) for i in range(4))

    out = {"n": len(rows), "srcc_pred_vs_t": rho(pred, t), "srcc_pred_vs_mean_luma_change": rho(pred, change),
           "srcc_pred_vs_changed_pixel_share": rho(pred, share), "srcc_t_vs_mean_luma_change": rho(t, change),
           "srcc_t_vs_changed_pixel_share": rho(t, share), "per_layout": {}}
    for lay in WATERMARK_LAYOUTS:
        m = layouts == lay
        out["per_layout"][lay] = {"n": int(m.sum()), "srcc_pred_vs_t": rho(pred[m], t[m]),
                                  "srcc_pred_vs_mean_luma_change": rho(pred[m], change[m]),
                                  "srcc_t_vs_mean_luma_change": rho(t[m], change[m])}
    return out


def _watermark_size_spread(model, clean: np.ndarray, per_crop: int = 2) -> dict[str, dict[str, float]]:

    j = list(model.cfg.heads).index("watermark")
    out = {}
    for k, layout in enumerate(WATERMARK_LAYOUTS):
        ts, seeds = [], []
        rng = np.random.default_rng(14 + k)
        for _ in range(len(clean) * per_crop):
            ts.append(float(rng.uniform(0.0, 1.0)))
            seeds.append(int(rng.integers(2**31)))
        row: dict[str, float] = {"n": len(ts)}
        for name, jitter in (("srcc_random_size", 1.0), ("srcc_no_size_spread", 0.0)):
            marked = [(apply_watermark(clean[i // per_crop], t, np.random.default_rng(sd), layout=layout, size_jitter=jitter,
                                       ink=_INK[0]) * 255).round().astype(np.uint8) for i, (t, sd) in enumerate(zip(ts, seeds, strict=True))]
            row[name] = rho(predict_intensities(model, np.stack(marked))[:, j], ts)
        out[layout] = row
    return out


def _watermark_factors(model, clean: np.ndarray, per_crop: int = 3) -> dict[str, float]:
    j = list(model.cfg.heads).index("watermark")
    font = next(f for f in find_fonts() if Path(f).name == "DejaVuSans.ttf")
    rng = np.random.default_rng(15)
    draws = [(i // per_crop, float(rng.uniform(0.0, 1.0)), str(rng.choice(list(WATERMARK_LAYOUTS))), int(rng.integers(2**31)))
             for i in range(len(clean) * per_crop)]
    ts = [t for _, t, _, _ in draws]
    conditions = {"as_generated": {}, "one_word": {"text": "SAMPLE"}, "one_font": {"font_path": font},
                  "one_word_one_font": {"text": "SAMPLE", "font_path": font},
                  "one_word_one_font_no_size_spread": {"text": "SAMPLE", "font_path": font, "size_jitter": 0.0}}
    out: dict[str, float] = {"n": len(draws)}
    for name, kw in conditions.items():
        marked = [(apply_watermark(clean[c], t, np.random.default_rng(sd), layout=lay, **kw, ink=_INK[0]) * 255).round().astype(np.uint8)
                  for c, t, lay, sd in draws]
        out[f"srcc_{name}"] = rho(predict_intensities(model, np.stack(marked))[:, j], ts)
    return out


def _watermark_ink(clean: np.ndarray, per_crop: int = 3) -> dict[str, dict[str, dict[str, float]]]:
    from deqa.baselines.synth import _luma

    rng = np.random.default_rng(15)  # analysis 11's draws
    draws = [(i // per_crop, float(rng.uniform(0.0, 1.0)), str(rng.choice(list(WATERMARK_LAYOUTS))), int(rng.integers(2**31)))
             for i in range(len(clean) * per_crop)]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, ink in (("as_v3", False), ("ink_matched", True)):
        clipped: list[bool] = []

        def change(c, t, lay, sd, ink=ink, clipped=clipped):
            info: dict = {}
            marked = apply_watermark(clean[c], t, np.random.default_rng(sd), layout=lay, ink=ink, info=info)
            clipped.append(bool(info.get("clipped", False)))
            return float(np.abs(_luma(marked) - _luma(clean[c])).mean())

        # Per layout: a full-frame tiling changes ~10x the pixels of a corner mark at one t, by design.
        out[name] = {}
        for layout in WATERMARK_LAYOUTS:
            mine = [d for d in draws if d[2] == layout]
            at_half = np.array([change(c, 0.5, lay, sd) for c, _, lay, sd in mine])
            clipped.clear()
            row = {"n": len(mine), "srcc_t_vs_mean_luma_change": rho([change(*d) for d in mine], [d[1] for d in mine]),
                   "relative_spread_of_change_at_t_0.5": round(float(at_half.std() / at_half.mean()), 3)}
            if ink:  # how many marks the opacity clip leaves under-inked: as drawn (uniform t) and all at t = 1
                row["share_clipped_as_drawn"] = round(float(np.mean(clipped)), 3)
                clipped.clear()
                for c, _, lay, sd in mine:
                    change(c, 1.0, lay, sd)
                row["share_clipped_at_t_1"] = round(float(np.mean(clipped)), 3)
            out[name][layout] = row
    return out


def _exposure_by_direction(model, pools: dict[str, np.ndarray], per_crop: int = 2) -> dict[str, dict]:
    j = list(model.cfg.heads).index("exposure")
    out: dict[str, dict] = {}
    for pool, clean in pools.items():
        ts = np.random.default_rng(30).uniform(0.0, 1.0, (len(clean), per_crop))  # the same t in both pools' draws
        rng = np.random.default_rng(0)  # not drawn from: the direction is given
        preds = {}
        for name, d in (("under", -1), ("over", 1)):
            ims = [(apply_exposure(c, float(t), rng, direction=d) * 255).round().astype(np.uint8)
                   for c, row in zip(clean, ts, strict=True) for t in row]
            preds[name] = predict_intensities(model, np.stack(ims))[:, j]
        t = ts.ravel()
        res: dict = {f"{name} grading": rho(p, t) for name, p in preds.items()}
        res["both directions pooled grading"] = rho(np.concatenate([preds["under"], preds["over"]]), np.concatenate([t, t]))
        for lo, hi in ((0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.0)):
            sel = (t >= lo) & (t < hi) if hi < 1 else t >= lo
            res[f"mean prediction, t in [{lo:.2f}, {hi:.2f}]"] = {name: round(float(p[sel].mean()), 3) for name, p in preds.items()}
            res[f"grading within t in [{lo:.2f}, {hi:.2f}]"] = {name: rho(p[sel], t[sel]) for name, p in preds.items()}
        res["mean prediction, clean"] = round(float(predict_intensities(model, (clean * 255).round().astype(np.uint8))[:, j].mean()), 3)
        res["n_per_direction"] = len(t)
        out[pool] = res
    return out


# Per-model analyses: (--only name, JSON key, function, the input it reads besides the model).
_PER_MODEL = (
    ("grading", "isolated_grading_seen_scenes", "_grading", "seen"),
    ("grading", "isolated_grading_unseen_scenes", "_grading", "unseen"),
    ("scene_share", "per_scene_share_of_residual_variance_unseen", "_scene_share", "unseen"),
    ("tricks", "inference_tricks", "_tricks", "build"),
    ("cast_hue", "colour_cast_by_hue_on_clean_heldout_crops", "_cast_directions", "clean"),
    ("cast_delta_e", "colour_cast_label_vs_delta_e_on_clean_heldout_crops", "_cast_vs_delta_e", "clean"),
    ("watermark_layout", "watermark_by_layout_on_clean_heldout_crops", "_watermark_by_layout", "clean"),
    ("watermark_strength", "watermark_label_vs_rendered_strength_on_clean_heldout_crops", "_watermark_vs_strength", "clean"),
    ("watermark_size_spread", "watermark_size_spread_on_clean_heldout_crops", "_watermark_size_spread", "clean"),
    ("cast_axis", "colour_cast_grading_by_opponent_axis_on_clean_crops", "_cast_by_axis", "clean_pools"),
    ("watermark_factors", "watermark_grading_with_word_font_size_held_fixed_on_clean_heldout_crops", "_watermark_factors",
     "clean"),
    ("exposure_direction", "exposure_by_direction_on_clean_crops", "_exposure_by_direction", "clean_pools"),
)


def _model_analyses(model, inputs: dict, only: set[str]) -> dict:
    """The per-model analyses named in ``only``, in the order of the module docstring."""
    return {key: globals()[fn](model, inputs[arg]) for name, key, fn, arg in _PER_MODEL if name in only}


ANALYSES = ("grading", "scene_share", "tricks", "cast_hue", "cast_delta_e", "watermark_layout", "watermark_strength",
            "watermark_size_spread", "cast_axis", "watermark_factors", "colour_stats", "gray_edge", "encoder_speed",
            "watermark_ink", "exposure_direction")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", required=True, help="work folder of scripts/build_default_model.sh")
    p.add_argument("--model", default=None, help="degradation-model folder (default: the built-in model)")
    p.add_argument("--compare", default=None, help="a second model folder, reported beside the first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--only", default=",".join(ANALYSES), help=f"comma-separated subset of {', '.join(ANALYSES)}")
    args = p.parse_args(argv)
    only = {a.strip() for a in args.only.split(",") if a.strip()}
    if only - set(ANALYSES):
        p.error(f"--only: unknown {sorted(only - set(ANALYSES))}; known: {', '.join(ANALYSES)}")
    build = Path(args.build)
    for need in ("photos/photos.json", "val/meta.json", "test/mixed/meta.json", "test/sweep_colour_cast/meta.json"):
        if not (build / need).is_file():
            raise SystemExit(f"{build / need}: missing; run scripts/build_default_model.sh {build} first")
    torch.set_num_threads(args.threads)
    _INK[0] = set_watermark_ink(json.loads((build / "test" / "mixed" / "meta.json").read_text()))

    unseen = {h: build / "test" / f"iso_{h}" for h in HEADS}
    seen = _seen_sets(build) if only & {"grading", "colour_stats"} else {}
    clean = (_clean_crops(build, "heldout") if only & {"cast_hue", "cast_delta_e", "watermark_layout", "watermark_strength",
                                                "watermark_size_spread", "cast_axis", "watermark_factors", "watermark_ink",
                                                "exposure_direction"} else None)
    clean_pools = {"unseen": clean, "seen": _clean_crops(build, "train")} if only & {"cast_axis", "exposure_direction"} else None
    res: dict = {"machine": f"{os.cpu_count()}-core CPU, torch {torch.__version__}", "models": {}}
    if _INK[0]:
        res["watermark_ink"] = True  # the build's protocol v4: ink-matched watermarks
    for folder in [args.model or str(builtin_model_dir())] + ([args.compare] if args.compare else []):
        model = load_degradation_model(folder)
        name = json.loads((Path(folder) / "deqa_baseline.json").read_text()).get("model_id", folder)
        res["models"][name] = _model_analyses(model, {"seen": seen, "unseen": unseen, "clean": clean, "clean_pools": clean_pools,
                                                         "build": build}, only)
        if model_watermark_ink(folder) != _INK[0]:  # measured on the other protocol's watermarks: said, not hidden
            res["models"][name]["trained_on_other_watermark_labels"] = True
    if "colour_stats" in only:
        res["colour_statistics_grading"] = {"seen": _colour_stats(seen["colour_cast"]), "unseen": _colour_stats(unseen["colour_cast"])}
    if "watermark_ink" in only:
        res["watermark_ink_generator_on_clean_heldout_crops"] = _watermark_ink(clean)
    if "gray_edge" in only:
        res["gray_edge_deviation_per_photo"] = _gray_edge(build)
    if "encoder_speed" in only:
        res["efficientnet_lite0_embed_224px"] = {"threads": args.threads, **_encoder_speed(args.threads)}
    res["load_avg_1min"] = os.getloadavg()[0]
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
