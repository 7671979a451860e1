"""How much fine texture an image has: the curation criterion of the training photos.

A degradation label is only learnable where the degradation is visible. Blur on a flat gradient
or an out-of-focus background changes nothing (its Laplacian stays ~0), so a crop of it labelled
"blur 0.8" teaches the model noise. The criterion is measured on the luma of the image *at the
resolution the model sees it*: the image is cut into square tiles, a tile is textured when the
standard deviation of its Laplacian reaches ``lap_std``, and the image passes when at least
``min_fraction`` of its tiles are textured. It is used twice: per crop (a rendered sample whose
clean crop fails is redrawn) and per photo (a photo whose random crops mostly fail is dropped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = ["TextureCriterion", "tile_laplacian_std", "textured_fraction"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def tile_laplacian_std(img: np.ndarray, tile: int = 32) -> np.ndarray:
    """Std of the luma Laplacian in each full ``tile`` x ``tile`` tile: [rows, cols].

    ``img``: float (H, W, 3) in [0, 1] or uint8. Partial tiles at the right/bottom edge are left
    out; an image smaller than one tile is one (partial) tile.
    """
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    lap = ndimage.laplace(arr.astype(np.float32) @ _LUMA)
    h, w = lap.shape
    rows, cols = h // tile, w // tile
    if rows == 0 or cols == 0:
        return np.array([[float(lap.std())]])
    return lap[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile).std(axis=(1, 3))


def textured_fraction(img: np.ndarray, tile: int = 32, lap_std: float = 0.03) -> float:
    """Fraction of ``tile``-px tiles whose Laplacian std is at least ``lap_std`` (luma in [0, 1])."""
    return float((tile_laplacian_std(img, tile) >= lap_std).mean())


@dataclass(frozen=True)
class TextureCriterion:
    """Pass when >= ``min_fraction`` of the ``tile``-px tiles have Laplacian std >= ``lap_std``.

    The defaults were set on the package photos at 224 px (see the model card): a sharp photo's
    crops have 50-100% textured tiles, a flat wallpaper, a sky or a defocused background 0-20%.
    ``min_fraction = 0`` disables the criterion.
    """

    tile: int = 32
    lap_std: float = 0.03
    min_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.tile < 4:
            raise ValueError(f"TextureCriterion.tile must be >= 4 px, got {self.tile}")
        if self.lap_std < 0 or not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"TextureCriterion needs lap_std >= 0 and min_fraction in [0, 1], got {self}")

    @property
    def enabled(self) -> bool:
        return self.min_fraction > 0

    def fraction(self, img: np.ndarray) -> float:
        return textured_fraction(img, self.tile, self.lap_std)

    def passes(self, img: np.ndarray) -> bool:
        return not self.enabled or self.fraction(img) >= self.min_fraction

    def to_dict(self) -> dict:
        return asdict(self)
