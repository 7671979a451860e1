"""What the built-in model misses when a degradation is made at the photo's full resolution, and
what its full-resolution windows (``views="windows"``) recover.

    python bench/native_resolution.py --build .cache/build2 [--model M] [--per-photo 2] [--out native.json]

Training crops are resized to 224 px before they are degraded, so every intensity the model gives
describes the photo as seen at 224 px. Users score camera photos, degraded (noise, JPEG, blur) at
their own resolution, which the scorer then shrinks: fine grain and 8-px blocks mostly average
away. On the build's held-out photographs (short side >= 448 px, so shrunk at least 2x) each photo
gets ``--per-photo`` draws per head of the generator's own noise, JPEG and blur at a random
intensity t, applied at full resolution, plus the clean photo. Every image goes through the
product's scorer (torch runtime; the numpy one agrees to float32 rounding) under several views:

- ``whole``: the image resized to 224 px (``views="whole"``);
- ``windows 2x2`` / ``windows 3x3``: plus 4 / 9 full-resolution 224-px windows whose mean
  replaces the noise and JPEG intensities (:class:`deqa.baselines.degradation_config.DetailViews`);
- ``windows 3x3 + blur``: the same with blur read from the windows too.

Per view and head: SRCC of the intensity with t, the mean intensity at t >= 0.5 (does a strong
defect read as strong?) and on the clean photos (false alarms), the clean photos' mean overall
score, and seconds per image. ``--speed-photos N`` also times both runtimes' whole pipeline on N
photos of the build (short side >= ``--min-side``) with and without the windows. Scene-level heads (colour cast, exposure, watermark) are not
tested: they are read from the whole view under every setting.
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
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deqa.baselines import builtin_model_dir  # noqa: E402
from deqa.baselines.degradation import DegradationScorer, load_degradation_model  # noqa: E402
from deqa.baselines.degradation_config import DetailViews  # noqa: E402
from deqa.baselines.photos import read_photo_index  # noqa: E402
from deqa.baselines.synth import apply_blur, apply_jpeg, apply_noise  # noqa: E402
from deqa.metrics import srcc  # noqa: E402

TESTED = {"noise": apply_noise, "jpeg": apply_jpeg, "blur": apply_blur}
VIEWS = {
    "whole": None,
    "windows 2x2": DetailViews(grid=2),
    "windows 3x3": DetailViews(grid=3),
    "windows 3x3 + blur": DetailViews(grid=3, heads=("noise", "jpeg", "blur")),
}


def _speed(folder: str, build: str, n: int, min_side: int) -> dict:
    """Images/s through ``Scorer.score`` (JPEG/PNG decode, resize, windows, network) on large photos."""
    from deqa.baselines import load_baseline

    big = []
    for e in read_photo_index(Path(build) / "photos"):
        with Image.open(e["file"]) as im:
            if min(im.size) >= min_side:
                big.append(e["file"])
        if len(big) == n:
            break
    if not big:
        raise SystemExit(f"--speed-photos: no photo of {build}/photos has a short side >= {min_side} px")
    out: dict = {"photos": len(big), "short_side_px_median": int(np.median([min(Image.open(p).size) for p in big]))}
    for backend in ("numpy", "torch"):
        for views in ("whole", "windows"):
            scorer = load_baseline(folder, backend=backend, views=views)
            scorer.score(big[:2], batch_size=8, num_workers=0)  # warm-up
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                scorer.score(big, batch_size=8, num_workers=0)
                times.append(time.perf_counter() - t0)
            out[f"{backend} {views}"] = round(len(big) / float(np.median(times)), 2)
            print(backend, views, out[f"{backend} {views}"], "img/s", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="work folder of scripts/build_default_model.sh (its photos/)")
    ap.add_argument("--model", default=None, help="degradation-model folder (default: the built-in model)")
    ap.add_argument("--per-photo", type=int, default=2, help="draws per photo and head")
    ap.add_argument("--min-side", type=int, default=448)
    ap.add_argument("--originals", action="store_true",
                    help="read the held-out photos' original files (as their packages ship them, often camera size) "
                         "instead of the build's curated copies")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-photos", type=int, default=0,
                    help="also time the whole pipeline (decode + views + network) on this many photos of the build with "
                         "a short side >= --min-side, both runtimes, whole view vs windows (median of 3 runs)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = args.model or str(builtin_model_dir())
    model = load_degradation_model(folder)
    heads = list(model.cfg.heads)
    photos = []
    for e in read_photo_index(Path(args.build) / "photos", "heldout"):
        path = e["path"] if args.originals else e["file"]
        with Image.open(path) as im:
            if min(im.size) >= args.min_side:
                photos.append((path, min(im.size)))
    rng = np.random.default_rng(0)
    cases = []  # (head or "clean", t, PIL image)
    for path, _ in photos:
        with Image.open(path) as im:
            clean = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        if args.per_photo == 0:
            break
        cases.append(("clean", 0.0, clean))
        for h, fn in TESTED.items():
            for _ in range(args.per_photo):
                t = float(rng.uniform(0.0, 1.0))
                cases.append((h, t, fn(clean, t, rng)))
    images = [Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)) for _, _, img in cases]

    def r3(x):
        return round(float(x), 3)

    res: dict = {"model": json.loads((Path(folder) / "deqa_baseline.json").read_text()).get("model_id", folder),
                 "photos": len(photos), "short_side_px": {"min": min(s for _, s in photos), "median": int(np.median([s for _, s in photos])),
                                                           "max": max(s for _, s in photos)},
                 "per_photo": args.per_photo, "images": len(images), "originals": args.originals,
                 "machine": f"{os.cpu_count()}-core CPU, torch {torch.__version__}, {args.threads} threads", "views": {}}
    for name, views in VIEWS.items() if images else ():  # --per-photo 0: the speed run only
        scorer = DegradationScorer(model, device="cpu", views=views)
        t0 = time.perf_counter()
        results = scorer.score(images, batch_size=8)
        sec = (time.perf_counter() - t0) / len(images)
        s = np.array([[r.details[h] for h in heads] for r in results])
        overall = np.array([r.score for r in results])
        kind = np.array([c[0] for c in cases])
        ts = np.array([c[1] for c in cases])
        row: dict = {"seconds_per_image": round(sec, 4), "clean_mean_score": r3(overall[kind == "clean"].mean())}
        for h in TESTED:
            j, m = heads.index(h), kind == h
            row[h] = {"srcc_with_t": r3(srcc(s[m, j], ts[m])), "mean_at_t_ge_0.5": r3(s[m & (ts >= 0.5), j].mean()),
                      "mean_on_clean": r3(s[kind == "clean", j].mean())}
        res["views"][name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    if args.speed_photos:
        res["speed"] = _speed(folder, args.build, args.speed_photos, args.min_side)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
