"""Real scorers and synthetic data sets for the scoring and evaluation tests (no weights needed).

- :class:`BrightnessScorer` scores an RGB image by its mean brightness, optionally planning its
  batches in reverse (as size grouping reorders them): deterministic, so order mistakes show.
- :class:`IntensityScorer` predicts from the mean grey level, so a test can draw images whose
  predictions it knows exactly and check the harness's metrics against hand computations.
- :class:`SharpnessScorer` predicts from image sharpness (mean |Laplacian|), a real, imperfect
  quality model: on a photo blurred progressively it ranks the images in quality order.
- :func:`make_blur_dataset` writes such a data set (PNG images + a label CSV in the registry's
  ``iqa-csv`` format) with MOS decreasing with the blur.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from deqa.levels import LEVEL_WORDS, expected_score, level_word, score_std
from deqa.results import ScoreResult
from deqa.scorer import Scorer

LEVELS = np.arange(1.0, 6.0)


def _as_grey(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(im.convert("L"), dtype=np.float64) for im in images]


def _result(score_from_probs: np.ndarray, model_id: str) -> ScoreResult:
    s = float(expected_score(score_from_probs))
    return ScoreResult(
        input="",
        score=s,
        score_0_1=(s - 1.0) / 4.0,
        level=level_word(s),
        model=model_id,
        std=float(score_std(score_from_probs)),
        probs=dict(zip(LEVEL_WORDS, map(float, score_from_probs), strict=True)),
    )


def level_probs(target: float, width: float = 0.6) -> np.ndarray:
    """A level distribution peaked near ``target`` (softmax of a parabola)."""
    logits = -((LEVELS - target) ** 2) / (2 * width**2)
    p = np.exp(logits - logits.max())
    return p / p.sum()


class BrightnessScorer(Scorer):
    """score_0_1 = mean RGB brightness / 255 exactly; records the size of every batch."""

    model_id = "mean-brightness"

    def __init__(self, reverse_batches: bool = False):
        self.reverse_batches = reverse_batches
        self.batch_sizes: list[int] = []

    def predict(self, batch):
        self.batch_sizes.append(len(batch))
        out = []
        for img in batch:
            q = float(np.asarray(img, dtype=np.float64).mean() / 255.0)
            out.append(ScoreResult("", 1 + 4 * q, q, "fair", self.model_id))
        return out

    def batch_order(self, inputs, batch_size):
        batches = super().batch_order(inputs, batch_size)
        return batches[::-1] if self.reverse_batches else batches


class IntensityScorer(Scorer):
    """score = 1 + 4 * mean grey / 255 exactly (no level distribution): predictions are known."""

    model_id = "test-intensity"
    default_batch_size = 3

    def make_collate(self):
        return _as_grey

    def predict(self, batch):
        out = []
        for grey in batch:
            s = 1.0 + 4.0 * float(grey.mean()) / 255.0
            out.append(
                ScoreResult(
                    input="",
                    score=s,
                    score_0_1=(s - 1) / 4,
                    level=level_word(s),
                    model=self.model_id,
                )
            )
        return out


class SharpnessScorer(Scorer):
    """Quality from sharpness: mean |Laplacian| mapped to [1, 5], with a level distribution."""

    model_id = "test-sharpness"
    default_batch_size = 4
    training_data = "none (hand-written sharpness measure)"

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after  # raise after this many images: simulates a crash
        self.seen = 0

    def make_collate(self):
        return _as_grey

    def predict(self, batch):
        if self.fail_after is not None and self.seen + len(batch) > self.fail_after:
            raise KeyboardInterrupt("simulated interrupt")
        self.seen += len(batch)
        out = []
        for g in batch:
            lap = np.abs(
                4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
            ).mean()
            target = 1.0 + 4.0 * lap / (lap + 8.0)
            out.append(_result(level_probs(target), self.model_id))
        return out


def write_label_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "mos", "std", "split"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_intensity_images(folder: Path, scores: list[float], prefix: str = "flat") -> list[str]:
    """Flat grey PNGs whose IntensityScorer score is exactly 1 + 4 * round(255 (s-1)/4) / 255."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, s in enumerate(scores):
        v = int(round(255 * (s - 1.0) / 4.0))
        name = f"{prefix}_{i:02d}.png"
        Image.fromarray(np.full((16, 16), v, dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def intensity_score(s: float) -> float:
    return 1.0 + 4.0 * int(round(255 * (s - 1.0) / 4.0)) / 255.0


def make_blur_dataset(
    folder: Path, n_crops: int = 4, blurs=(0.0, 0.6, 1.2, 2.0, 3.0, 4.5), size: int = 96
) -> tuple[Path, Path]:
    """Crops of a real photo (skimage 'astronaut'), each blurred with increasing sigma.

    Returns (image folder, label CSV). MOS on a 0-100 scale falls with the blur (plus a per-crop
    offset so the data are not a perfect function of blur); std is 8-14 on that scale. Every third
    image is in the 'train' split, the rest 'test'.
    """
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    k = 0
    for c in range(n_crops):
        x0, y0 = min(40 + 110 * c, 512 - size), min(60 + 70 * (c % 2), 512 - size)
        crop = photo.crop((x0, y0, x0 + size, y0 + size))
        for b, sigma in enumerate(blurs):
            im = crop.filter(ImageFilter.GaussianBlur(sigma)) if sigma > 0 else crop
            name = f"c{c}_b{b}.png"
            im.save(images / name)
            mos = 88.0 - 13.0 * b + 3.0 * ((c * 7) % 3 - 1)
            rows.append(
                {
                    "image": name,
                    "mos": f"{mos:.2f}",
                    "std": f"{8 + (k % 7):.2f}",
                    "split": "train" if k % 3 == 2 else "test",
                }
            )
            k += 1
    labels = write_label_csv(folder / "labels.csv", rows)
    return images, labels
