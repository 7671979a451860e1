"""The degradation model's config, weights file name, resize and result rows: what both runtimes share.

Kept free of torch so the numpy runtime (:mod:`.degradation_numpy`) and the synthetic-data
generator can use them without paying for ``import torch``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..levels import level_word
from ..results import ScoreResult
from .dictconfig import from_dict_strict

__all__ = ["DEFAULT_HEAD_WEIGHTS", "DegradationModelConfig", "EncoderBranchConfig", "WEIGHTS_NAME", "BRANCH_WEIGHTS_NAME",
           "DetailViews", "WindowedBatch", "ResizeToArray", "degradation_results", "mix_logits", "resize_square"]

WEIGHTS_NAME = "model.safetensors"
BRANCH_WEIGHTS_NAME = "branch.safetensors"

# The four specified heads carry 0.2/0.3/0.25/0.25; the JPEG and exposure heads added beside them
# get weights on the same scale, and all are renormalised to sum to 1 (see normalised_weights).
DEFAULT_HEAD_WEIGHTS: dict[str, float] = {
    "colour_cast": 0.2,
    "blur": 0.3,
    "watermark": 0.25,
    "noise": 0.25,
    "jpeg": 0.25,
    "exposure": 0.2,
}


@dataclass
class DegradationModelConfig:
    """Typed config of :class:`DegradationNet`; saved in ``deqa_baseline.json``."""

    heads: tuple[str, ...] = ("colour_cast", "blur", "watermark", "noise", "jpeg", "exposure")
    weights: dict[str, float] = field(default_factory=dict)  # empty -> DEFAULT_HEAD_WEIGHTS
    widths: tuple[int, ...] = (32, 64, 128, 256)
    stem_stride: int = 4
    se_hidden: int = 64
    head_hidden: tuple[int, ...] = (256, 64)
    dropout: float = 0.2
    image_size: int = 224

    def __post_init__(self) -> None:
        self.heads = tuple(self.heads)
        self.widths = tuple(int(w) for w in self.widths)
        self.head_hidden = tuple(int(h) for h in self.head_hidden)
        if not self.heads or len(set(self.heads)) != len(self.heads):
            raise ValueError(f"heads must be a non-empty list of distinct names, got {list(self.heads)}")
        weights = dict(self.weights) if self.weights else {}
        extra = sorted(set(weights) - set(self.heads))
        if extra:
            raise ValueError(f"weights given for {extra}, which are not heads {list(self.heads)}")
        for h in self.heads:
            if h not in weights:
                if h not in DEFAULT_HEAD_WEIGHTS:
                    raise ValueError(f"head {h!r} has no default weight; give one in 'weights'")
                weights[h] = DEFAULT_HEAD_WEIGHTS[h]
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"head weights must be >= 0 with a positive sum, got {weights}")
        self.weights = {h: float(weights[h]) for h in self.heads}
        if self.stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {self.stem_stride}")
        if len(self.widths) < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("widths must be non-empty and dropout in [0, 1)")
        min_size = self.stem_stride * 2 ** len(self.widths)  # the stem stride and one 2x2 pool per stage
        if self.image_size < min_size:
            raise ValueError(f"image_size must be >= {min_size} px for stem_stride {self.stem_stride}, got {self.image_size}")

    def normalised_weights(self) -> list[float]:
        """Head weights in ``heads`` order, summing to 1 (so overall stays in [0, 1])."""
        total = sum(self.weights.values())
        return [self.weights[h] / total for h in self.heads]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DegradationModelConfig:
        return from_dict_strict(cls, d, "degradation model config")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# EfficientNet-Lite0's depthwise stride per MBConv block (the weights do not record strides).
LITE0_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)


@dataclass
class EncoderBranchConfig:
    """The encoder branch of a degradation model: a frozen ImageNet trunk + one MLP, mixed per head.

    The branch reads the same S x S image as the CNN. ``taps`` name where the trunk's maps are
    pooled (mean and std over the image, per channel): -1 is the stem, 0.. the MBConv blocks; the
    trunk runs only up to the last tap. Low and middle taps are the point: the final ImageNet
    features are built to ignore blur and noise, the early ones are not (on the v6 build's sets,
    a head on the final 1280-d features graded blur at SRCC 0.84, one on the taps at 0.91).
    The head is Linear(d, h1) - ReLU - Dropout - Linear(h1, h2) - ReLU - Linear(h2, n_heads) on the
    standardised features. ``mix[head]`` in [0, 1] is the branch's share of that head's logit:
    intensity = sigmoid((1 - m) * cnn_logit + m * branch_logit), chosen on the validation set.
    """

    encoder: str = "efficientnet-lite0"
    strides: tuple[int, ...] = LITE0_STRIDES
    taps: tuple[int, ...] = (-1, 0, 2, 4, 7, 10, 14, 15)
    head_hidden: tuple[int, ...] = (256, 64)
    dropout: float = 0.1
    mix: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.strides = tuple(int(s) for s in self.strides)
        self.taps = tuple(int(t) for t in self.taps)
        self.head_hidden = tuple(int(h) for h in self.head_hidden)
        self.mix = {str(k): float(v) for k, v in self.mix.items()}
        if self.encoder != "efficientnet-lite0":
            raise ValueError(f"encoder branch: encoder {self.encoder!r} unsupported; only 'efficientnet-lite0' has a numpy runtime")
        if not self.taps or len(set(self.taps)) != len(self.taps) or min(self.taps) < -1 or max(self.taps) >= len(self.strides):
            raise ValueError(f"encoder branch: taps {list(self.taps)} must be distinct, -1 (stem) or block indices < {len(self.strides)}")
        if any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"encoder branch: strides must be 1 or 2, got {list(self.strides)}")
        if not self.head_hidden or min(self.head_hidden) < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("encoder branch: head_hidden must be positive widths and dropout in [0, 1)")
        bad = {k: v for k, v in self.mix.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"encoder branch: mix weights must be in [0, 1], got {bad}")

    def check_heads(self, heads: tuple[str, ...]) -> None:
        """Every head needs a mix weight, and no weight may name another head."""
        if set(self.mix) != set(heads):
            raise ValueError(f"encoder branch: mix names {sorted(self.mix)}, the model's heads are {list(heads)}")

    def mix_vector(self, heads: tuple[str, ...]) -> np.ndarray:
        self.check_heads(heads)
        return np.array([self.mix[h] for h in heads], dtype=np.float32)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderBranchConfig:
        return from_dict_strict(cls, d, "encoder branch config")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def mix_logits(cnn: np.ndarray, branch: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Per-head blend of two models' logits [B, H] with the branch's share ``mix`` [H]."""
    return (1.0 - mix) * cnn + mix * branch


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size`` (aspect not kept): the one resize of training and scoring.

    Training crops are made with this same call (``deqa.baselines.synth.random_crop``), so the
    scorer shows the model images with the same sharpness as the clean training crops; a softer
    filter here would read as blur. Lanczos after a box reduction to <= 3x the target size.
    """
    return img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)


@dataclass
class DetailViews:
    """Full-resolution windows for the heads whose defects live at pixel scale.

    Training crops are resized to S px *before* they are degraded, so every intensity describes
    the image as seen at S px; a camera photo shrunk 10x to S px loses its sensor noise and JPEG
    blocks to the resize. For images whose short side is at least ``min_side``, ``grid`` x
    ``grid`` windows of S x S are also read at full resolution (evenly spaced, corner to corner)
    and each head in ``heads`` takes the mean of its window intensities; the other heads (colour
    cast, exposure, watermark: judged on the whole scene) and smaller images keep the whole view.
    Blur is left on the whole view: at full resolution most photos are softer than at viewing
    size, and the windows read that softness as blur (``bench/native_resolution.py``).
    """

    grid: int = 3
    heads: tuple[str, ...] = ("noise", "jpeg")
    min_side: int = 448

    def __post_init__(self) -> None:
        self.heads = tuple(self.heads)
        if self.grid < 1:
            raise ValueError(f"views.grid must be >= 1, got {self.grid}")
        if self.min_side < 1:
            raise ValueError(f"views.min_side must be >= 1, got {self.min_side}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetailViews:
        return from_dict_strict(cls, d, "views")

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid, "heads": list(self.heads), "min_side": self.min_side}

    def check_heads(self, heads: tuple[str, ...]) -> None:
        unknown = [h for h in self.heads if h not in heads]
        if unknown:
            raise ValueError(f"views.heads {unknown} are not heads of the model {list(heads)}")

    def windows(self, img: Image.Image, size: int) -> list[np.ndarray]:
        """The full-resolution S x S windows of one image ([] when it is read whole only)."""
        w, h = img.size
        if min(w, h) < max(self.min_side, size):
            return []
        ys = np.linspace(0, h - size, self.grid).round().astype(int)
        xs = np.linspace(0, w - size, self.grid).round().astype(int)
        # Cropped in PIL: a 100-MP photo is not copied whole into an array for a few small windows.
        return [np.asarray(img.crop((int(x), int(y), int(x) + size, int(y) + size)), dtype=np.uint8) for y in ys for x in xs]

    def combine(self, model_heads: tuple[str, ...], whole: np.ndarray, windows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Whole-view intensities [B, H] with ``heads`` replaced by the window means of each image
        that has windows (``counts[i]`` of them, in order, in ``windows`` [sum(counts), H])."""
        out = np.array(whole, dtype=np.float32, copy=True)
        cols = [model_heads.index(h) for h in self.heads]
        start = 0
        for i, c in enumerate(np.asarray(counts, dtype=int)):
            if c:
                out[i, cols] = windows[start : start + c][:, cols].mean(0)
            start += c
        return out


@dataclass
class WindowedBatch:
    """A collated batch with full-resolution windows: whole views [B, S, S, 3], the windows of
    every image in order [sum(counts), S, S, 3], and how many windows each image has [B]."""

    whole: Any
    windows: Any
    counts: np.ndarray


class ResizeToArray:
    """Picklable collate: RGB images -> uint8 array [B, S, S, 3] (whole image squashed to S x S),
    or with ``views`` a :class:`WindowedBatch` that adds each large image's full-resolution windows."""

    def __init__(self, size: int, views: DetailViews | None = None):
        self.size = size
        self.views = views

    def __call__(self, images: list[Image.Image]) -> np.ndarray | WindowedBatch:
        whole = np.stack([np.asarray(resize_square(img, self.size), dtype=np.uint8) for img in images])
        if self.views is None:
            return whole
        per_image = [self.views.windows(img, self.size) for img in images]
        flat = [w for ws in per_image for w in ws]
        windows = np.stack(flat) if flat else np.zeros((0, self.size, self.size, 3), np.uint8)
        return WindowedBatch(whole, windows, np.array([len(ws) for ws in per_image], dtype=np.int64))


def degradation_results(intensities: np.ndarray, overall: np.ndarray, heads: tuple[str, ...], model_id: str) -> list[ScoreResult]:
    """One :class:`ScoreResult` per row: intensities [B, n_heads] and overall [B] in [0, 1]."""
    out = []
    for i in range(intensities.shape[0]):
        o = float(overall[i])
        score = 1.0 + 4.0 * o
        details = {h: round(float(intensities[i, j]), 6) for j, h in enumerate(heads)}
        out.append(ScoreResult("", score, o, level_word(score), model_id, details=details))
    return out
