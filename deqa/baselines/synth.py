"""Synthetic degradations with a known intensity: the labels the degradation model learns.

Each degradation maps an image and an intensity ``t`` in [0, 1] (0 = untouched, 1 = as bad as
the generator goes) to a degraded image; ``t`` is the training label of that degradation's head.
The intensity scales are chosen so that equal steps of ``t`` look roughly equally worse (e.g.
JPEG quality falls faster at the low end, where artefacts actually appear). Several degradations
can hit one image; they are applied in the order a real pipeline would: optics (blur), exposure,
white balance (colour cast), sensor noise, an overlaid watermark, then JPEG encoding.

Everything works on float32 arrays in [0, 1] of shape (H, W, 3) and is driven by a
``numpy.random.Generator``, so a sample is a pure function of its seed.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage, signal

from ..fileio import write_text_atomic
from .degradation_config import resize_square
from .dictconfig import from_dict_strict
from .texture import TextureCriterion

__all__ = [
    "DEGRADATIONS",
    "APPLY_ORDER",
    "SynthConfig",
    "apply_blur",
    "apply_noise",
    "apply_jpeg",
    "apply_exposure",
    "apply_colour_cast",
    "apply_watermark",
    "find_fonts",
    "draws_text",
    "sample_plan",
    "degrade",
    "random_crop",
    "rotate_hue",
    "textured_crop",
    "render_sample",
    "render_sample_at",
    "usable_photos",
    "render_dataset",
    "load_synth_dataset",
]

Array = np.ndarray


# --- the degradations ------------------------------------------------------------------------
def apply_blur(img: Array, t: float, rng: np.random.Generator, kind: str | None = None) -> Array:
    """Gaussian, motion or box blur whose spread grows linearly with ``t`` (0.4 to 4 px sigma;
    motion streaks grow faster, see below, so that the three kinds look alike at equal ``t``)."""
    kind = kind or rng.choice(["gaussian", "motion", "box"])
    sigma = 0.4 + 3.6 * t
    if kind == "gaussian":
        return ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="reflect")
    if kind == "box":
        # A box of width w has std w/sqrt(12); match the Gaussian's sigma.
        width = max(2, int(round(sigma * np.sqrt(12.0))))
        return ndimage.uniform_filter(img, size=(width, width, 1), mode="reflect")
    if kind == "motion":
        # A straight streak of length L at a random angle. A streak blurs one direction only, so
        # at the Gaussian's sigma it is visibly weaker (multi-scale Laplacian energy lost: about
        # half at t = 0.8); L = sqrt(12) * sigma * (1 + 4t) matches the Gaussian's loss within ~10%
        # over t in [0.1, 0.8] on textured 224-px crops.
        length = max(2.0, sigma * np.sqrt(12.0) * (1.0 + 4.0 * t))
        size = int(np.ceil(length)) | 1
        kimg = Image.new("L", (size * 4, size * 4), 0)
        angle = rng.uniform(0, np.pi)
        c = size * 2
        dx, dy = np.cos(angle) * length * 2, np.sin(angle) * length * 2
        ImageDraw.Draw(kimg).line([(c - dx, c - dy), (c + dx, c + dy)], fill=255, width=4)
        kernel = np.asarray(kimg.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
        kernel /= max(kernel.sum(), 1e-6)
        # FFT convolution (streaks reach ~70 px; direct convolution would take seconds) of the
        # reflect-padded image, 'valid' part: the same result as ndimage.convolve(mode="reflect").
        k = kernel.shape[0] // 2
        padded = np.pad(img, ((k, k), (k, k), (0, 0)), mode="symmetric")
        out = signal.fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown blur kind {kind!r}; expected gaussian, motion or box")


def _luma(img: Array) -> Array:
    return img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def apply_noise(img: Array, t: float, rng: np.random.Generator, kind: str | None = None) -> Array:
    """Gaussian (colour or luma), salt-and-pepper or Poisson (shot) noise, stronger with ``t``."""
    kind = kind or rng.choice(["gaussian", "salt_pepper", "poisson"], p=[0.5, 0.2, 0.3])
    h, w, _ = img.shape
    if kind == "gaussian":
        sigma = 0.01 + 0.14 * t
        if rng.random() < 0.5:
            noise = rng.normal(0.0, sigma, size=(h, w, 3))
        else:  # luma-only noise, as from a camera's luminance channel
            noise = np.repeat(rng.normal(0.0, sigma, size=(h, w, 1)), 3, axis=2)
        return np.clip(img + noise.astype(np.float32), 0.0, 1.0)
    if kind == "salt_pepper":
        amount = 0.003 + 0.08 * t
        out = img.copy()
        u = rng.random((h, w))
        out[u < amount / 2] = 0.0
        out[(u >= amount / 2) & (u < amount)] = 1.0
        return out
    if kind == "poisson":
        # Photons collected at full white; fewer photons = more shot noise (std ~ sqrt(x/peak)).
        peak = 10.0 ** (3.3 - 2.0 * t)
        return np.clip(rng.poisson(img * peak) / peak, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown noise kind {kind!r}; expected gaussian, salt_pepper or poisson")


def jpeg_quality(t: float) -> int:
    """JPEG quality for intensity ``t``: 90 at t=0 down to 5 at t=1.

    Quality is spent fast at the top (90 -> 50 looks alike) and slowly at the bottom, where each
    step adds visible blocking, so that equal steps of ``t`` look about equally worse.
    """
    return int(round(5 + 85 * (1.0 - t) ** 2))


def apply_jpeg(img: Array, t: float, rng: np.random.Generator) -> Array:
    """Encode and decode with JPEG at :func:`jpeg_quality` (random chroma subsampling)."""
    buf = io.BytesIO()
    pil = Image.fromarray(_to_uint8(img))
    pil.save(buf, format="JPEG", quality=jpeg_quality(t), subsampling=int(rng.choice([0, 2])))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def apply_exposure(img: Array, t: float, rng: np.random.Generator, direction: int | None = None) -> Array:
    """Under- (up to -3.5 EV) or over-exposure (up to +2.5 EV, highlights clip) in linear light."""
    direction = direction if direction is not None else int(rng.choice([-1, 1]))
    ev = -3.5 * t if direction < 0 else 2.5 * t
    linear = np.power(img, 2.2) * (2.0**ev)
    return np.power(np.clip(linear, 0.0, 1.0), 1 / 2.2).astype(np.float32)


def apply_colour_cast(
    img: Array, t: float, rng: np.random.Generator, kind: str | None = None, angle: float | None = None
) -> Array:
    """A white-balance error (per-channel gains) or a tint blended over the image.

    The cast's hue ``angle`` (radians; 0 = red, 2π/3 = green, 4π/3 = blue) is drawn uniformly
    unless given.
    """
    kind = kind or rng.choice(["gains", "tint"])
    angle = rng.uniform(0, 2 * np.pi) if angle is None else angle
    direction = np.cos(angle - np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])).astype(np.float32)
    if kind == "gains":
        gains = 1.0 + 0.45 * t * direction
        out = img * gains
        # Keep the mean brightness: a cast is a colour error, not an exposure error.
        out *= _luma(img).mean() / max(float(_luma(out).mean()), 1e-6)
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    if kind == "tint":
        colour = np.clip(0.5 + 0.5 * direction, 0.0, 1.0)
        tinted = _luma(img)[..., None] * colour * 2.0
        alpha = 0.35 * t
        return np.clip((1 - alpha) * img + alpha * tinted, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown colour cast kind {kind!r}; expected gains or tint")


_WATERMARK_WORDS = [
    "SAMPLE", "PREVIEW", "PROOF", "© Photo Studio", "stockphoto", "COPYRIGHT", "DRAFT",
    "www.example.com", "@photographer", "Getty", "shutter", "DO NOT COPY", "© 2024", "demo",
    "Alamy", "istock", "NOT FOR SALE", "photo.net", "© J. Smith", "CONFIDENTIAL",
]


def draws_text(path: str, text: str = "".join(sorted(set("".join(_WATERMARK_WORDS)) - {" "}))) -> bool:
    """Whether the font at ``path`` draws every character of ``text`` as a glyph of its own.

    Some fonts named like text fonts hold no Latin letters at all (matplotlib's DejaVu*Display
    fonts draw nothing): a watermark set in one is invisible while its label says "watermarked",
    which v3 of the built-in model was trained on for ~5% of its watermarks. A missing glyph is
    drawn as nothing or as the font's .notdef box, so every character must leave ink and "A",
    "O" and "l" must differ (three identical boxes are .notdef).
    """
    try:
        font = ImageFont.truetype(path, size=32)
    except OSError:
        return False
    masks = {}
    for ch in set(text) | set("AOl"):
        mask = font.getmask(ch)
        ink = np.asarray(mask, dtype=np.uint8).reshape(mask.size[1], mask.size[0]) if mask.size[0] * mask.size[1] else None
        if ink is None or ink.max() < 128:
            return False
        masks[ch] = ink
    a, o, l_ = masks["A"], masks["O"], masks["l"]
    return not (a.shape == o.shape == l_.shape and (a == o).all() and (o == l_).all())


@lru_cache(maxsize=1)
def find_fonts() -> tuple[str, ...]:
    """TrueType text fonts that ship with installed packages (matplotlib's DejaVu/STIX, system fonts).

    Only fonts that draw every watermark character (:func:`draws_text`), one file per file name
    (matplotlib and the system often ship the same DejaVu files), in a stable order.
    """
    fonts: list[str] = []
    try:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        # Only text fonts: the STIX size/symbol fonts and cm* maths fonts draw no Latin letters.
        fonts += sorted(str(p) for p in ttf.glob("*.ttf") if p.name.startswith(("DejaVu", "STIXGeneral")))
    except ImportError:
        pass
    for root in ("/usr/share/fonts/truetype", "/usr/share/fonts/TTF"):
        if os.path.isdir(root):
            fonts += sorted(str(p) for p in Path(root).rglob("*.ttf"))
    seen: set[str] = set()
    usable = []
    for path in fonts:
        name = Path(path).name
        if name not in seen and draws_text(path):
            seen.add(name)
            usable.append(path)
    return tuple(usable)


def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size=size)


WATERMARK_LAYOUTS = ("tiled", "centre", "diagonal", "corner")
# The reference mark of ink-matched watermarks: Pillow's bundled font (present wherever Pillow is,
# unlike the system fonts) and a word of middling length and weight among _WATERMARK_WORDS.
INK_REFERENCE_TEXT = "SAMPLE"
# Ink-matched opacity: the reference mark's opacity at t = 0 and t = 1, and the clip of a mark's
# scaled opacity. Marks carry up to a few times less ink than the reference, so the top is 0.6
# rather than the unmatched 0.85, where far more marks at high t would need an opacity above 1.
# At 0.6 (bench/baseline_limits.py --only watermark_ink, 360 marks on held-out crops): 1-5% of
# the marks per layout as drawn; at t = 1, 25% of the centred marks (long words shrunk to fit
# leave less ink than the reference), 9% diagonal, <= 2% tiled and corner. A clipped mark is as inked as opacity 1 allows: its ink still does not fall as t grows.
# Measured with a full rebuild (BENCHMARKS.md, "Ink-matched watermark labels"): a model trained on
# these labels grades its own held-out marks worse (0.78 / 0.75) than v11 grades v3's (0.875 / 0.870),
# so the option is off by default.
INK_OPACITY = (0.15, 0.6)
INK_OPACITY_RANGE = (0.05, 1.0)
# apply_watermark(size_match=True): the clip of its size scale. Marks differ 3-9x in ink by
# word and font (the ink test), so its sqrt spans up to 3x; the clip keeps an extreme word and
# font from a mark under half or over twice the size the label drew.
SIZE_MATCH_RANGE = (0.5, 2.0)


def _word_ink(text: str, font_path: str | None, size: int) -> float:
    """Summed alpha (0-255) of ``text`` drawn once, opaque, unrotated, at ``size``."""
    font = _font(font_path, max(1, size))
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (max(1, box[2] - box[0] + 2), max(1, box[3] - box[1] + 2)), 0)
    ImageDraw.Draw(canvas).text((1 - box[0], 1 - box[1]), text, font=font, fill=255)
    return float(np.asarray(canvas, dtype=np.float32).sum())


@lru_cache(maxsize=4)
def _median_ink_ratio(fonts: tuple[str, ...]) -> float:
    """Median over the generator's words x fonts of (reference word's ink) / (word's ink), at 30 px.

    Dividing by it keeps the typical mark at its unmatched size: the reference word in Pillow's
    font is lighter than most words in most fonts, so undivided, most marks would shrink. One size
    stands for all because ink grows roughly with the square of the size for every word alike."""
    ref = _word_ink(INK_REFERENCE_TEXT, None, 30)
    return float(np.median([ref / max(_word_ink(w, f, 30), 1.0) for w in _WATERMARK_WORDS for f in (fonts or (None,))]))


def apply_watermark(img: Array, t: float, rng: np.random.Generator, layout: str | None = None, *,
                    size_jitter: float = 1.0, text: str | None = None, font_path: str | None = None,
                    ink: bool = False, size_match: bool = False, info: dict | None = None) -> Array:
    """Overlay text: tiled, centred, diagonal or in a corner; opacity and size grow with ``t``.

    The text is light on a dark background and dark on a light one (decided by the mean luma
    under the text), as a watermark meant to be seen is: a white mark on a white sky would make
    the label describe something invisible. The text size is a random factor (per layout, e.g.
    0.12-0.2 of the short side for a centred word) times ``0.7 + 0.6 t``; ``size_jitter`` scales
    the random factor's spread about its midpoint (1: the training generator, 0: no spread) and
    draws the same random numbers either way, so one seed gives the same marks but for their size.
    ``text`` and ``font_path`` replace the drawn word and font after they are drawn (the random
    stream is the same), so an analysis can hold them fixed and change nothing else.

    ``ink``: match the mark's ink to ``t`` whatever its word and font. The opacity, linear in ``t``
    over :data:`INK_OPACITY`, is scaled by (ink of the reference mark) / (ink of this mark), where
    ink is the summed alpha of the text drawn opaque and the reference mark is
    :data:`INK_REFERENCE_TEXT` in Pillow's bundled font, drawn with the same layout rule, random
    size factor, place and rotation (a centred word is shrunk to fit on its own). So opacity x
    inked area (the mark's summed alpha) depends on ``t``, layout and size only, up to the clip
    of the scaled opacity to :data:`INK_OPACITY_RANGE` (the lightest marks at high ``t``, mostly
    long centred words; 1-5% per layout as drawn, see :data:`INK_OPACITY`). Without it, marks of
    one label differ 3-9x in ink between the lightest and heaviest word and font (the ink test),
    which cost v10 ~0.03 of held-out watermark grading (BENCHMARKS.md); trained on, the matched
    label graded worse still (BENCHMARKS.md). Same random numbers either way. ``info``, when
    given, receives the mark's ``opacity`` and, with ``ink``, its ``ink_ratio`` and whether the
    scaled opacity was ``clipped`` (for analyses).

    ``size_match`` (an analysis knob, not a training option: ``bench/watermark_label_ab.py``):
    the other way to even out the word and the font. The opacity stays the label's; the text size
    is scaled by sqrt((ink of the reference word) / (ink of this word) / (that ratio's median over
    the words and fonts)), both drawn once, opaque, at the drawn size (clipped to 0.5-2x), so a
    word's inked area rather than its font size follows ``t`` and the typical mark keeps its size.
    It evens out one word, not the laid-out mark: a tiled mark's count of words still follows the
    word's width, and a long centred or diagonal word is still shrunk to fit after the scale, so it
    evens corner marks most. Not with ``ink``. Same random numbers either way; ``info`` receives
    the ``size_scale``. Measured as a label (BENCHMARKS.md, "Watermark labels, a 1-epoch A/B"):
    graded worse than the shipped one.
    """

    if size_match and ink:
        raise ValueError("apply_watermark: size_match and ink are two ways to even out a mark's ink; pass one")

    def size_factor(lo: float, hi: float) -> float:
        u = float(rng.uniform(lo, hi))
        if size_jitter == 1.0:
            return u  # bit for bit the training generator's draw
        mid = (lo + hi) / 2
        return mid + size_jitter * (u - mid)

    layout = layout or rng.choice(list(WATERMARK_LAYOUTS))
    if layout not in WATERMARK_LAYOUTS:
        raise ValueError(f"unknown watermark layout {layout!r}; expected tiled, centre, diagonal or corner")
    h, w, _ = img.shape
    short = min(h, w)
    fonts = find_fonts()
    drawn_font = str(rng.choice(fonts)) if fonts else None
    drawn_text = str(rng.choice(_WATERMARK_WORDS))
    font_path = drawn_font if font_path is None else font_path
    text = drawn_text if text is None else text
    opacity = 0.2 + 0.65 * t
    scale = 0.7 + 0.6 * t
    lo_hi = {"tiled": (0.06, 0.1), "centre": (0.12, 0.2), "diagonal": (0.12, 0.2), "corner": (0.07, 0.11)}[layout]
    size = int(short * size_factor(*lo_hi) * scale)
    if size_match:
        ratio = _word_ink(INK_REFERENCE_TEXT, None, size) / max(_word_ink(text, font_path, size), 1.0)
        k = float(np.clip(np.sqrt(ratio / _median_ink_ratio(tuple(fonts))), *SIZE_MATCH_RANGE))
        size = max(1, int(round(size * k)))
        if info is not None:
            info["size_scale"] = k
    # Drawn on first use, in the order the marks are drawn, so the reference mark of ink=True
    # reuses the marked one's place and rotation without touching the random stream.
    drawn: dict[str, float | int | None] = {}

    def draw_mark(text: str, font_path: str | None, alpha: int) -> Image.Image:
        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        fill = (255, 255, 255, alpha)  # the shade is set below, from the background
        if layout == "tiled":
            font = _font(font_path, max(8, size))
            box = draw.textbbox((0, 0), text, font=font)
            tw, th = box[2] - box[0] + int(short * 0.05), box[3] - box[1] + int(short * 0.08)
            if "offset" not in drawn:
                drawn["offset"] = int(rng.integers(0, max(tw, 1)))
            offset = int(drawn["offset"]) % max(tw, 1)
            for row, y in enumerate(range(-th, h + th, th)):
                for x in range(-tw - offset + (row % 2) * tw // 2, w + tw, tw):
                    draw.text((x, y), text, font=font, fill=fill)
            if "angle" not in drawn:
                drawn["angle"] = float(rng.uniform(-35, 35)) if rng.random() < 0.5 else None
        elif layout in ("centre", "diagonal"):
            s = size
            font = _font(font_path, max(10, s))
            box = draw.textbbox((0, 0), text, font=font)
            # Shrink long words until they fit across the image.
            while box[2] - box[0] > 0.95 * (w if layout == "centre" else 1.3 * short) and s > 10:
                s = int(s * 0.85)
                font = _font(font_path, s)
                box = draw.textbbox((0, 0), text, font=font)
            draw.text((w / 2, h / 2), text, font=font, fill=fill, anchor="mm")
            if "angle" not in drawn:
                drawn["angle"] = float(rng.choice([-1, 1]) * rng.uniform(25, 50)) if layout == "diagonal" else None
        else:
            font = _font(font_path, max(8, size))
            margin = int(short * 0.03)
            if "corner" not in drawn:
                drawn["corner"] = int(rng.integers(0, 4))
            corner = int(drawn["corner"])
            anchor = ["la", "ra", "ld", "rd"][corner]
            xy = (margin if corner in (0, 2) else w - margin, margin if corner in (0, 1) else h - margin)
            draw.text(xy, text, font=font, fill=fill, anchor=anchor)
        if drawn.get("angle") is not None:
            layer = layer.rotate(float(drawn["angle"]), resample=Image.Resampling.BILINEAR)
        return layer.getchannel("A")

    if not ink:
        alpha = draw_mark(text, font_path, int(round(255 * opacity)))
        if info is not None:
            info.update(opacity=opacity)
    else:
        if not isinstance(_font(None, 12), ImageFont.FreeTypeFont):
            raise RuntimeError("ink-matched watermarks need Pillow with FreeType: its bundled reference font must scale with size")
        mask = np.asarray(draw_mark(text, font_path, 255), dtype=np.float32)
        ref = np.asarray(draw_mark(INK_REFERENCE_TEXT, None, 255), dtype=np.float32)
        ratio = float(ref.sum()) / max(float(mask.sum()), 1.0)
        reference = INK_OPACITY[0] + (INK_OPACITY[1] - INK_OPACITY[0]) * t
        matched = float(np.clip(reference * ratio, *INK_OPACITY_RANGE))
        if info is not None:
            info.update(opacity=matched, ink_ratio=ratio, clipped=matched != reference * ratio)
        alpha = Image.fromarray(np.clip(mask * matched + 0.5, 0, 255).astype(np.uint8))
    under = np.asarray(alpha) > 0
    bg = float(_luma(img)[under].mean()) if under.any() else 0.5
    shade = int(rng.integers(225, 256)) if bg < 0.5 else int(rng.integers(0, 41))
    layer = Image.new("RGBA", (w, h), (shade, shade, shade, 0))
    layer.putalpha(alpha)
    base = Image.fromarray(_to_uint8(img)).convert("RGBA")
    out = Image.alpha_composite(base, layer).convert("RGB")
    return np.asarray(out, dtype=np.float32) / 255.0


def _to_uint8(img: Array) -> Array:
    return np.clip(np.asarray(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)


DEGRADATIONS: dict[str, Callable[[Array, float, np.random.Generator], Array]] = {
    "colour_cast": apply_colour_cast,
    "blur": apply_blur,
    "watermark": apply_watermark,
    "noise": apply_noise,
    "jpeg": apply_jpeg,
    "exposure": apply_exposure,
}
# The order a real capture-and-publish pipeline applies them in.
APPLY_ORDER: tuple[str, ...] = ("blur", "exposure", "colour_cast", "noise", "watermark", "jpeg")


# --- sampling -----------------------------------------------------------------------------------
@dataclass
class SynthConfig:
    """How synthetic samples are drawn. ``count_probs[k]`` = P(k degradations on one image).

    ``size`` is the side of the rendered square and must be the model's input size
    (``DegradationModelConfig.image_size``): the degradations are defined in pixels of the image
    the model sees, so a set rendered at another size means something else by the same label.
    ``min_texture`` (with ``texture_lap_std`` / ``texture_tile``, see :mod:`.texture`) rejects clean
    crops too flat for blur to be visible; up to ``max_crop_tries`` crops are drawn, then the most
    textured one is used. Crops have an aspect ratio log-uniform in [1/max_aspect, max_aspect] and
    are squashed to a square, as the scorer squashes whole photos. ``sweep`` names one head drawn
    uniformly in [0, 1] on *every* sample (the per-head grading sets of the held-out protocol);
    the other heads follow the training distribution as nuisance. ``hue_rotate_prob`` is the
    chance that a clean crop's colours are rotated about the grey axis by a uniform angle before
    any degradation (:func:`rotate_hue`): a new scene palette with the neutrals still neutral, so
    "no colour cast" stays true; a training-scene augmentation, never used for held-out sets.
    ``watermark_ink`` draws ink-matched watermarks (``apply_watermark(..., ink=True)``): it changes
    what the watermark label means, so a model's training, validation and held-out sets must agree
    on it (protocol v4 of the built-in model's card); same random stream either way.
    """

    heads: tuple[str, ...] = ("colour_cast", "blur", "watermark", "noise", "jpeg", "exposure")
    size: int = 224
    count_probs: tuple[float, ...] = (0.2, 0.35, 0.25, 0.15, 0.05)
    min_intensity: float = 0.05
    # Crop side as a fraction of the photo's short side (then resized down to ``size``).
    crop_scale: tuple[float, float] = (0.25, 1.0)
    max_aspect: float = 1.78
    min_texture: float = 0.3
    texture_lap_std: float = 0.03
    texture_tile: int = 32
    max_crop_tries: int = 20
    sweep: str | None = None
    hue_rotate_prob: float = 0.0
    watermark_ink: bool = False

    def __post_init__(self) -> None:
        self.heads = tuple(self.heads)
        self.count_probs = tuple(float(p) for p in self.count_probs)
        self.crop_scale = tuple(float(s) for s in self.crop_scale)
        unknown = [h for h in self.heads if h not in DEGRADATIONS]
        if unknown:
            raise ValueError(f"SynthConfig.heads: unknown degradation(s) {unknown}; known: {sorted(DEGRADATIONS)}")
        if abs(sum(self.count_probs) - 1.0) > 1e-6 or min(self.count_probs) < 0:
            raise ValueError(f"SynthConfig.count_probs must be non-negative and sum to 1, got {self.count_probs}")
        if len(self.count_probs) > len(self.heads) + 1:
            raise ValueError(f"SynthConfig.count_probs has {len(self.count_probs)} entries for {len(self.heads)} heads")
        if not 0.0 <= self.min_intensity < 1.0:
            raise ValueError(f"SynthConfig.min_intensity must be in [0, 1), got {self.min_intensity}")
        if self.size < 16:
            raise ValueError(f"SynthConfig.size must be >= 16 px, got {self.size}")
        if self.max_aspect < 1.0:
            raise ValueError(f"SynthConfig.max_aspect must be >= 1 (1 = square crops), got {self.max_aspect}")
        if self.max_crop_tries < 1:
            raise ValueError(f"SynthConfig.max_crop_tries must be >= 1, got {self.max_crop_tries}")
        if not isinstance(self.watermark_ink, bool):
            raise ValueError(f"SynthConfig.watermark_ink must be true or false, got {self.watermark_ink!r}")
        if self.watermark_ink and "watermark" not in self.heads:
            raise ValueError(f"SynthConfig.watermark_ink: the heads {list(self.heads)} draw no watermark to ink-match")
        if not 0.0 <= self.hue_rotate_prob <= 1.0:
            raise ValueError(f"SynthConfig.hue_rotate_prob must be in [0, 1], got {self.hue_rotate_prob}")
        if self.sweep is not None and self.sweep not in self.heads:
            raise ValueError(f"SynthConfig.sweep {self.sweep!r} is not one of the heads {list(self.heads)}")
        _ = self.texture  # building the criterion validates the texture fields

    @property
    def texture(self) -> TextureCriterion:
        return TextureCriterion(tile=self.texture_tile, lap_std=self.texture_lap_std, min_fraction=self.min_texture)

    @classmethod
    def from_dict(cls, d: dict) -> SynthConfig:
        return from_dict_strict(cls, d, "SynthConfig")


def sample_plan(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, float]:
    """Which degradations hit one image, and how hard: {name: intensity}."""
    k = int(rng.choice(len(cfg.count_probs), p=cfg.count_probs))
    names = rng.choice(len(cfg.heads), size=k, replace=False)
    plan = {cfg.heads[i]: float(rng.uniform(cfg.min_intensity, 1.0)) for i in names}
    if cfg.sweep is not None:
        # Continuous over [0, 1], no mass at 0: the swept head is graded, not detected.
        plan[cfg.sweep] = float(rng.uniform(0.0, 1.0))
    return plan


def degrade(img: Array, plan: dict[str, float], rng: np.random.Generator, *, watermark_ink: bool = False) -> Array:
    """Apply ``plan`` in :data:`APPLY_ORDER`; ``watermark_ink`` as in :class:`SynthConfig`."""
    unknown = set(plan) - set(DEGRADATIONS)
    if unknown:
        raise ValueError(f"unknown degradation(s) {sorted(unknown)}; known: {sorted(DEGRADATIONS)}")
    for name in APPLY_ORDER:
        if name in plan and plan[name] > 0:
            if name == "watermark" and watermark_ink:
                img = apply_watermark(img, plan[name], rng, ink=True)
            else:
                img = DEGRADATIONS[name](img, plan[name], rng)
    return img


def random_crop(
    photo: Image.Image, size: int, rng: np.random.Generator, scale=(0.25, 1.0), max_aspect: float = 1.0
) -> Array:
    """A random crop squashed to ``size`` x ``size``, always *down*-sampled so it stays sharp.

    The crop's short side is a fraction ``scale`` of the photo's short side (at least ``size``),
    its aspect ratio log-uniform in [1/max_aspect, max_aspect] (as far as the photo allows). It is
    resized with :func:`~deqa.baselines.degradation.resize_square`, the scorer's own resize.
    """
    w, h = photo.size
    short = min(w, h)
    if short < size:
        raise ValueError(f"photo of {w}x{h} is smaller than the {size}-px crop; use a larger photo or a smaller size")
    side = int(rng.uniform(max(scale[0] * short, size), max(scale[1] * short, size)))
    aspect = float(np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect)))) if max_aspect > 1 else 1.0
    cw, ch = (min(w, int(side * aspect)), side) if aspect >= 1 else (side, min(h, int(side / aspect)))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    crop = resize_square(photo.crop((x, y, x + cw, y + ch)), size)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.float32) / 255.0


def rotate_hue(img: Array, angle: float) -> Array:
    """Rotate every pixel's RGB vector by ``angle`` (radians) about the grey axis (1, 1, 1).

    Grey pixels (r = g = b) are fixed points and each pixel keeps its mean (r + g + b) / 3, so the
    scene changes colour (a green meadow turns blue) without acquiring a cast: a colour cast moves
    the neutrals, this does not. Values pushed out of [0, 1] by saturated colours are clipped.
    """
    k = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(k, k)
    return np.clip(img @ rot.T.astype(np.float32), 0.0, 1.0).astype(np.float32)


def textured_crop(photo: Image.Image, rng: np.random.Generator, cfg: SynthConfig) -> tuple[Array, float]:
    """A clean crop that passes ``cfg.texture`` (or the most textured of ``max_crop_tries``).

    Returns the crop and its textured fraction.
    """
    crit = cfg.texture
    best, best_frac = None, -1.0
    for _ in range(cfg.max_crop_tries if crit.enabled else 1):
        crop = random_crop(photo, cfg.size, rng, cfg.crop_scale, cfg.max_aspect)
        frac = crit.fraction(crop)
        if frac > best_frac:
            best, best_frac = crop, frac
        if frac >= crit.min_fraction:
            break
    return best, best_frac


def render_sample(photo: Image.Image, rng: np.random.Generator, cfg: SynthConfig) -> tuple[Array, Array]:
    """One training sample: (uint8 image (S, S, 3), float32 labels in ``cfg.heads`` order)."""
    clean, _ = textured_crop(photo, rng, cfg)
    if cfg.hue_rotate_prob > 0 and rng.random() < cfg.hue_rotate_prob:  # no draw when off: old sets re-render byte for byte
        clean = rotate_hue(clean, float(rng.uniform(-np.pi, np.pi)))
    plan = sample_plan(rng, cfg)
    img = degrade(clean, plan, rng, watermark_ink=cfg.watermark_ink)
    labels = np.array([plan.get(h, 0.0) for h in cfg.heads], dtype=np.float32)
    return _to_uint8(img), labels


# --- datasets on disk ---------------------------------------------------------------------------
_photo_cache: dict[str, Image.Image] = {}


def _photo(path: str) -> Image.Image:
    if path not in _photo_cache:
        try:
            with Image.open(path) as im:
                _photo_cache[path] = im.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:  # a damaged file in the photo folder: name it
            raise ValueError(f"photo {path}: cannot be read ({err or type(err).__name__}); "
                             "prepare the photo folder again (`deqa baseline photos`) or remove it from photos.json") from None
    return _photo_cache[path]


def _render_chunk(args) -> tuple[int, Array, Array, list[int]]:
    start, stop, photos, cfg_dict, seed = args
    cfg = SynthConfig.from_dict(cfg_dict)
    usable = usable_photos(photos, cfg)
    images = np.empty((stop - start, cfg.size, cfg.size, 3), dtype=np.uint8)
    labels = np.empty((stop - start, len(cfg.heads)), dtype=np.float32)
    src = []
    for j, i in enumerate(range(start, stop)):
        images[j], labels[j], k = render_sample_at(usable, cfg, seed, i)
        src.append(photos.index(usable[k]))
    return start, images, labels, src


def usable_photos(photos: Sequence[str], cfg: SynthConfig) -> list[str]:
    """The photos a set draws from: those at least ``cfg.size`` on the short side."""
    return [p for p in photos if min(_photo(p).size) >= cfg.size]


def render_sample_at(usable: Sequence[str], cfg: SynthConfig, seed: int, i: int) -> tuple[Array, Array, int]:
    """Sample ``i`` of a set rendered with ``seed`` from ``usable`` photos: (image, labels, photo index).

    Seeded by (seed, i) alone, so sample i is the same whatever the chunking, and an analysis can
    render any one sample again (with instrumented degradations) without the rest.
    """
    rng = np.random.default_rng([seed, i])
    k = int(rng.integers(0, len(usable)))
    img, labels = render_sample(_photo(usable[k]), rng, cfg)
    return img, labels, k


@dataclass
class _Progress:
    done: int = 0
    sources: list[int] = field(default_factory=list)


# SynthConfig fields added after sets were first rendered whose default draws exactly what the code
# before them drew (the hue rotation draws nothing when off; ink matching only when on). A saved
# meta without one of these reads as its default; any other missing field means an older generator.
_FIELDS_SAFE_TO_DEFAULT = {"hue_rotate_prob": 0.0, "watermark_ink": False}


def _render_differences(saved: dict, meta: dict) -> list[str]:
    """What differs between a set's saved meta and the render ``meta`` asks for ("seed",
    "config.count_probs"), empty when they describe the same render: fields of
    :data:`_FIELDS_SAFE_TO_DEFAULT` missing from the saved config read as their default, so a set
    written before such a field existed is resumed or kept, not rendered again."""
    saved = {**saved, "config": {**_FIELDS_SAFE_TO_DEFAULT, **saved.get("config", {})}}
    top = sorted(k for k in saved.keys() | meta.keys() if k != "config" and saved.get(k) != meta.get(k))
    config = sorted(f"config.{k}" for k in saved["config"].keys() | meta["config"].keys()
                    if saved["config"].get(k) != meta["config"].get(k))
    return top + config


def render_dataset(
    photos: Sequence[str],
    out_dir: str | os.PathLike,
    n: int,
    cfg: SynthConfig,
    *,
    seed: int = 0,
    workers: int = 1,
    chunk: int = 256,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Render ``n`` samples into ``out_dir`` (images.npy uint8 N×S×S×3, labels.npy float32 N×H).

    Written chunk by chunk into memory-mapped arrays with the count done in ``progress.json``:
    an interrupted run resumes where it stopped and gives the same bytes as an uninterrupted one.
    A folder holding a set rendered with other settings (photos, count, seed, generator config)
    is refused, unless ``overwrite`` (a build folder used as a cache of its settings).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    photos = [str(p) for p in photos]
    if not photos:
        raise ValueError("render_dataset: no photos given")
    meta = {"n": n, "seed": seed, "config": asdict(cfg), "photos": photos, "format": "deqa-synth-v1"}
    if not usable_photos(photos, cfg):  # before any file is written (a full-size memmap, say)
        largest = max(min(_photo(p).size) for p in photos)
        raise ValueError(f"no photo is at least {cfg.size} px on its short side (the largest short side is {largest} px): "
                         "lower --size, or prepare the photos with a larger --max-side")
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    prog_path = out / "progress.json"
    shape = (n, cfg.size, cfg.size, 3)
    # As JSON stores it (tuples read back as lists), to compare with a saved meta.
    differ = _render_differences(json.loads(meta_path.read_text()), json.loads(json.dumps(meta))) if meta_path.is_file() else None
    if differ and not overwrite:
        raise ValueError(
            f"{out} holds a set rendered with other settings ({', '.join(differ)}); choose another "
            "--out, or pass --overwrite to render this one in its place"
        )
    if differ == [] and prog_path.is_file():
        prog = _Progress(**json.loads(prog_path.read_text()))
        images = np.load(out / "images.npy", mmap_mode="r+")
        labels = np.load(out / "labels.npy", mmap_mode="r+")
    else:
        write_text_atomic(meta_path, json.dumps(meta, indent=1))
        prog = _Progress()
        images = np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
        labels = np.lib.format.open_memmap(out / "labels.npy", mode="w+", dtype=np.float32, shape=(n, len(cfg.heads)))
    jobs = [(s, min(s + chunk, n), photos, asdict(cfg), seed) for s in range(prog.done, n, chunk)]
    bar = tqdm(total=n, initial=prog.done, disable=not progress, unit="img", desc=f"render {out.name}")
    if workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers)
        results = pool.imap(_render_chunk, jobs)
    else:
        pool = None
        results = map(_render_chunk, jobs)
    try:
        for start, imgs, labs, src in results:  # imap keeps order, so "done" is a prefix
            images[start : start + len(imgs)] = imgs
            labels[start : start + len(labs)] = labs
            images.flush()
            labels.flush()
            prog.done = start + len(imgs)
            prog.sources += src
            write_text_atomic(prog_path, json.dumps(asdict(prog)))
            bar.update(len(imgs))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return out


def set_watermark_ink(meta: dict) -> bool:
    """Whether a rendered set's watermarks are ink-matched (its meta from :func:`load_synth_dataset`)."""
    return bool(meta["config"].get("watermark_ink", False))


def common_watermark_ink(named_metas: Sequence[tuple[str, dict]]) -> bool:
    """The one ``watermark_ink`` of several rendered sets, or a ValueError naming a set that differs:
    their watermark labels would mean two things."""
    first_name, first = named_metas[0]
    ink = set_watermark_ink(first)
    for name, meta in named_metas[1:]:
        if set_watermark_ink(meta) != ink:
            raise ValueError(f"{name}: rendered {'without' if ink else 'with'} --watermark-ink but {first_name} "
                             f"{'with' if ink else 'without'} it; the watermark labels of one run must mean one thing")
    return ink


def read_synth_meta(path: str | os.PathLike) -> dict:
    """A rendered set's ``meta.json`` (how it was rendered), without loading its images."""
    meta_path = Path(path) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a rendered data set (no meta.json); run `deqa baseline synth --out {path}`")
    return json.loads(meta_path.read_text())


def load_synth_dataset(path: str | os.PathLike) -> tuple[Array, Array, dict]:
    """(images memmap N×S×S×3 uint8, labels N×H float32, meta) of a finished rendered set."""
    path = Path(path)
    meta = read_synth_meta(path)
    prog = json.loads((path / "progress.json").read_text()) if (path / "progress.json").is_file() else {"done": 0}
    if prog["done"] < meta["n"]:
        raise ValueError(f"{path}: only {prog['done']}/{meta['n']} samples rendered; re-run the same synth command to resume")
    images = np.load(path / "images.npy", mmap_mode="r")
    labels = np.load(path / "labels.npy")
    return images, labels, meta
