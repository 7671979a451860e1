"""Robust image decoding: whatever a user points deqa at becomes an RGB PIL image or a clear error.

Every scorer goes through :func:`load_image`, so the CLI, the Python API and the evaluation
harness agree on what counts as a readable image and how odd modes are mapped to RGB.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "to_rgb", "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS"]

# Pillow's own bomb guard is 89.5 Mpx (warning) / 179 Mpx (error). 178,956,970 px is Pillow's
# error threshold; we use it as the default hard limit and say how to raise it.
DEFAULT_MAX_PIXELS = 178_956_970

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".jfif", ".avif"}
)


class ImageLoadError(ValueError):
    """An input could not be decoded; ``str(err)`` names the file and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    # Transparent pixels would otherwise become black (convert drops alpha), which a quality
    # model reads as a dark, badly exposed image. White matches how viewers show them.
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Map any Pillow mode to 8-bit RGB (alpha flattened on white, 16/32-bit rescaled)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return _flatten_alpha(img)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # High bit-depth grey: rescale by the container's range, not the data's, so that a dark
        # 16-bit image stays dark (stretching the histogram would change its quality).
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():  # would be cast to arbitrary bytes (black, here): no image to score
            raise ValueError(f"{int((~np.isfinite(arr)).sum())} of its {arr.size} pixels are NaN or infinite")
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) <= 65535) else None
        if mode == "F" and arr.min(initial=0) >= 0 and arr.max(initial=0) <= 1:
            top = 1.0  # float images are conventionally in [0, 1]: a dark one stays dark
        if top is None:  # no known range (32-bit integers above 16 bits, floats outside [0, 1])
            lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
            arr = (arr - lo) / max(hi - lo, 1e-12)
        else:
            arr = arr / top
        grey = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    return img.convert("RGB")


def load_image(source: str | os.PathLike | Image.Image, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (a path or a PIL image) into an RGB image, EXIF orientation applied.

    Raises :class:`ImageLoadError` naming the file for: a missing path, a directory, an empty
    file, something that is not an image, truncated or corrupt data, and images with more than
    ``max_pixels`` pixels (decompression-bomb guard; ``None`` disables it).
    """
    if isinstance(source, Image.Image):
        name = "<PIL image>"
        img = source
        _check_pixels(name, img.size, max_pixels)
        return to_rgb(ImageOps.exif_transpose(img) or img)

    name = str(source)
    path = Path(source)
    if not path.exists():
        raise ImageLoadError(name, "no such file")
    if path.is_dir():
        raise ImageLoadError(name, "is a directory, not an image (to score the images in a folder, give the folder itself as an input)")
    if path.stat().st_size == 0:
        raise ImageLoadError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings(), _pillow_settings(max_pixels):
            # We enforce our own limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_pixels(name, img.size, max_pixels)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return to_rgb(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as err:
        # Pillow refuses above twice its own limit while opening, before our check sees the size;
        # at the default limit (equal to Pillow's) that is every image over it.
        got = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(got.group(1)):,} pixels" if got else "too many pixels"
        limit = max_pixels if max_pixels is not None else 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageLoadError(name, f"image is {size}, over the limit of {limit:,} {_RAISE_IT}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(name, "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        msg = str(err) or type(err).__name__
        if "truncated" in msg.lower():
            raise ImageLoadError(name, f"truncated image data ({msg})") from None
        raise ImageLoadError(name, f"corrupt or unreadable image ({msg})") from None


_SETTINGS_LOCK = threading.Lock()


@contextmanager
def _pillow_settings(max_pixels: int | None) -> Iterator[None]:
    """Pillow's process-wide settings as a decode needs them, touched only when they differ and
    restored after (a host application's own settings stay its own):

    - our pixel limit replaces Pillow's decompression-bomb error (raised above twice
      ``Image.MAX_IMAGE_PIXELS``), lifted only when ours is higher or off;
    - ``ImageFile.LOAD_TRUNCATED_IMAGES`` must be False: never silently accept half an image
      (Pillow would fill the rest with grey), changed only if the host set it True.
    """
    lift = Image.MAX_IMAGE_PIXELS is not None and (max_pixels is None or max_pixels > 2 * Image.MAX_IMAGE_PIXELS)
    if not lift and not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield  # the usual case: nothing to change
        return
    with _SETTINGS_LOCK:  # deqa's decoding threads change and restore them one at a time
        pixels, truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        if lift:
            Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = pixels, truncated


_RAISE_IT = "(decompression-bomb guard; raise it with --max-pixels if the file is trusted)"


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int | None) -> None:
    w, h = size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(
            name,
            f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} {_RAISE_IT}",
        )
    if w < 1 or h < 1:
        raise ImageLoadError(name, f"image has no pixels ({w}x{h})")
