"""The README's table "Reading its output": the built-in model on skimage's `astronaut` as shipped
and after one degradation each, read as shipped (full-resolution windows for noise and JPEG) and
with ``views="whole"``.

    python bench/builtin_examples.py

Prints the markdown rows; the numbers depend only on the shipped weights and these edits (the
noise is seeded), so any machine prints the same table.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deqa.baselines import load_baseline  # noqa: E402


def examples() -> dict[str, Image.Image]:
    from skimage import data

    a = Image.fromarray(data.astronaut())
    arr = np.asarray(a).astype(np.float32)
    buf = io.BytesIO()
    a.save(buf, "JPEG", quality=10)
    noise = np.random.default_rng(0).normal(0, 20, arr.shape)
    return {
        "as shipped": a,
        "Gaussian blur, radius 8 px": a.filter(ImageFilter.GaussianBlur(8)),
        "brightness x 0.15": Image.fromarray((arr * 0.15).astype(np.uint8)),
        "an all-black 512 x 512 frame": Image.new("RGB", (512, 512)),
        "Gaussian noise, sd 20 of 255": Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8)),
        "JPEG quality 10": Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
    }


def main() -> int:
    imgs = examples()
    shipped = load_baseline(None).score(list(imgs.values()))
    whole = load_baseline(None, views="whole").score(list(imgs.values()))
    print("| image | score | level | largest intensity | with `--views whole` |")
    print("|---|---|---|---|---|")
    for name, r, w in zip(imgs, shipped, whole, strict=True):
        top = max(r.details, key=r.details.get)
        label = "JPEG" if top == "jpeg" else top
        # "same" when the whole view prints identically (the windows may move a third decimal)
        mine, theirs = f"{r.score:.2f}, {label} {r.details[top]:.2f}", f"{w.score:.2f}, {label} {w.details[top]:.2f}"
        print(f"| {name} | {r.score:.2f} | {r.level} | {label} {r.details[top]:.2f} | "
              + ("same" if mine == theirs else theirs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
