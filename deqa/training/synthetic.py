"""A synthetic quality task with a known answer: real photo crops, degraded by a known amount.

Each image is a random crop of one of scikit-image's bundled photographs (astronaut, coffee,
rocket, ...), degraded by Gaussian blur and Gaussian noise whose strength is set by a hidden
quality q in [0, 1]; its MOS is ``1 + 4 q`` on the level scale with a fixed rater std, and its
soft label is built by :func:`deqa.levels.soft_labels`. Training and validation crops come from
*different* photographs, so a model that scores the validation images well has learnt to see
blur and noise, not to recognise images. Used by the learning test, the soft-vs-one-hot
benchmark and the CPU demo; requires scikit-image (the ``baselines`` extra).

    python -m deqa.training.synthetic outputs/synthetic      # writes images + train/val manifests
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SyntheticTask", "TRAIN_PHOTOS", "VAL_PHOTOS", "make_synthetic_task", "degrade", "main"]

# Natural photographs bundled with scikit-image (no download). Disjoint train / val sources.
TRAIN_PHOTOS = (
    "astronaut", "coffee", "rocket", "immunohistochemistry", "camera", "brick", "gravel", "hubble_deep_field", "moon", "retina",
)
VAL_PHOTOS = ("chelsea", "coins", "grass", "clock")

MAX_BLUR_SIGMA = 2.0  # pixels, at q = 0
MAX_NOISE_STD = 0.20  # of the [0, 1] intensity range, at q = 0
RATER_STD = 0.5  # on the 1-5 level scale
CROP_SCALE = 2.0  # crop side / image side


@dataclass(frozen=True)
class SyntheticTask:
    """Where the task was written."""

    root: Path
    train_manifest: Path
    val_manifest: Path


def _photo(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the synthetic quality task needs scikit-image: pip install 'deqa[baselines]'"
        ) from err
    img = np.asarray(getattr(data, name)(), dtype=np.float64)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


DEGRADATIONS = ("noise", "blur", "blur+noise")


def degrade(crop: np.ndarray, quality: float, rng: np.random.Generator, kind: str = "blur+noise") -> np.ndarray:
    """Blur and/or add noise, growing as quality goes from 1 (clean) to 0. crop: [H, W, 3] in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {DEGRADATIONS}")
    severity = 1.0 - float(quality)
    out = crop
    if "blur" in kind and severity > 0:
        sigma = MAX_BLUR_SIGMA * severity
        out = gaussian_filter(out, sigma=(sigma, sigma, 0))
    if "noise" in kind:
        out = out + rng.normal(0.0, MAX_NOISE_STD * severity, size=out.shape)
    return np.clip(out, 0.0, 1.0)


def _write_split(root: Path, name: str, photos, n: int, size: int, rng, label_method: str, kind: str):
    from PIL import Image

    from ..data.manifest import ManifestRecord, write_manifest
    from ..levels import soft_labels

    sources = [_photo(p) for p in photos]
    quality = rng.uniform(0.0, 1.0, size=n)
    mos = 1.0 + 4.0 * quality
    probs = soft_labels(mos, np.full(n, RATER_STD), method=label_method)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        src = sources[i % len(sources)]
        # crop 2x the output size, then downsample: keeps the photo's own detail at `size` px
        side = min(int(CROP_SCALE * size), src.shape[0], src.shape[1])
        y = rng.integers(0, src.shape[0] - side + 1)
        x = rng.integers(0, src.shape[1] - side + 1)
        crop = np.asarray(
            Image.fromarray((src[y : y + side, x : x + side] * 255).astype(np.uint8)).resize(
                (size, size), Image.BILINEAR
            ),
            dtype=np.float64,
        ) / 255.0
        # Photos with black or white areas (hubble, moon) would clip the noise and look cleaner
        # than labelled: keep the content inside [0.15, 0.85].
        img = degrade(0.15 + 0.7 * crop, quality[i], rng, kind)
        rel = f"{name}/{i:04d}.png"
        Image.fromarray((img * 255).round().astype(np.uint8)).save(root / rel)
        records.append(
            ManifestRecord(
                image=rel,
                mos=float(mos[i]),
                std=RATER_STD,
                mos_norm=float(mos[i]),
                std_norm=RATER_STD,
                probs=[float(p) for p in probs[i]],
                split="train" if name == "train" else "test",
                dataset="synthetic",
            )
        )
    manifest = root / f"{name}.jsonl"
    write_manifest(manifest, records)
    return manifest


def make_synthetic_task(
    out_dir: str | Path,
    *,
    n_train: int = 2048,
    n_val: int = 128,
    size: int = 56,
    seed: int = 0,
    label_method: str = "moment",
    degradation: str = "blur+noise",
    val_photos: tuple[str, ...] = VAL_PHOTOS,
) -> SyntheticTask:
    """Write ``out_dir/{train,val}/*.png`` and ``out_dir/{train,val}.jsonl`` (deqa manifests).

    Deterministic for a seed. Train crops come from TRAIN_PHOTOS, validation crops from VAL_PHOTOS.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = _write_split(root, "train", TRAIN_PHOTOS, n_train, size, rng, label_method, degradation)
    val = _write_split(root, "val", val_photos, n_val, size, rng, label_method, degradation)
    return SyntheticTask(root=root, train_manifest=train, val_manifest=val)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic blur/noise quality task.")
    parser.add_argument("out_dir")
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--n-val", type=int, default=128)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    task = make_synthetic_task(args.out_dir, n_train=args.n_train, n_val=args.n_val, size=args.size, seed=args.seed)
    print(f"wrote {task.train_manifest} and {task.val_manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
