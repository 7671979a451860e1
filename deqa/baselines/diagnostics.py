"""Sanity checks for a baseline scorer, the failure modes that silently ruin a quality model.

- input normalisation: per-channel mean/std of what the model actually receives (a model fed
  [0, 255] pixels, or unnormalised ones, scores everything alike);
- NaN/Inf in embeddings or outputs;
- module modes: any BatchNorm/Dropout left in training mode at inference, recorded as found
  (then switched to eval for the remaining checks, and the report says which were);
- known-good vs known-bad: each image is scored clean and after a heavy synthetic degradation
  (blur + noise + JPEG); a working model ranks the clean one higher nearly always (the report
  names every image where it did not).

``report["problems"]`` says in words why ``report["ok"]`` is false; unreadable inputs are listed
in ``report["unreadable"]`` and left out of the checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..imageio import ImageLoadError, load_image
from ..scorer import Scorer
from .degradation_config import WindowedBatch
from .synth import apply_blur, apply_jpeg, apply_noise

__all__ = ["diagnose", "degrade_heavily", "modules_in_train_mode", "GOOD_BEATS_BAD_MIN"]

# Share of images whose heavily degraded copy must score lower than the original.
GOOD_BEATS_BAD_MIN = 0.9


def modules_in_train_mode(module: torch.nn.Module) -> list[str]:
    """Names of submodules whose ``training`` flag is set (should be empty at inference)."""
    return [name or type(module).__name__ for name, m in module.named_modules() if m.training]


def degrade_heavily(img: Image.Image, seed: int = 0) -> Image.Image:
    """A clearly bad version of ``img``: strong Gaussian blur, noise, then JPEG quality ~10."""
    rng = np.random.default_rng(seed)
    x = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    x = apply_blur(x, 0.8, rng, kind="gaussian")
    x = apply_noise(x, 0.8, rng, kind="gaussian")
    x = apply_jpeg(x, 0.8, rng)
    return Image.fromarray(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8))


def _modules(scorer: Scorer) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in vars(scorer).items() if isinstance(m, torch.nn.Module)}


def diagnose(scorer: Scorer, images: list, *, resize_to: int = 384) -> dict[str, Any]:
    """Run every check on ``images`` (paths or PIL images); returns a report dict with ``ok``."""
    if not images:
        raise ValueError("diagnose: give at least one image (a folder of known-good photos works best)")
    pil, names, unreadable = [], [], []
    for i, src in enumerate(images):
        name = str(src) if not isinstance(src, Image.Image) else f"<PIL image {i}>"
        try:
            img = load_image(src)
        except ImageLoadError as err:  # one bad file must not hide what the others show
            unreadable.append({"input": name, "error": err.reason})
            continue
        img.thumbnail((resize_to, resize_to))  # the check is about the model, not about decode time
        pil.append(img)
        names.append(name)
    if not pil:
        raise ValueError(f"diagnose: none of the {len(images)} image(s) could be read: "
                         + "; ".join(f"{u['input']}: {u['error']}" for u in unreadable[:5]))
    report: dict[str, Any] = {"model": scorer.model_id, "n_images": len(pil)}
    if unreadable:
        report["unreadable"] = unreadable
    problems: list[str] = []

    batch = scorer.make_collate()(pil)
    if isinstance(batch, WindowedBatch):  # the whole views are the input every image gets
        batch = batch.whole
    # A torch batch is NCHW, the numpy runtime's NHWC: the same statistics over all but the channels.
    if isinstance(batch, torch.Tensor):
        arr, axes = batch.cpu().numpy(), (0, 2, 3)
    elif isinstance(batch, np.ndarray):
        arr, axes = batch, (0, 1, 2)
    else:
        arr = None
    if arr is not None:
        x = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
        report["input"] = {
            "dtype": str(batch.dtype),
            "shape": list(batch.shape),
            "channel_mean": [round(float(v), 4) for v in x.mean(axis=axes)],
            "channel_std": [round(float(v), 4) for v in x.std(axis=axes, ddof=1)],
            "min": float(x.min()),
            "max": float(x.max()),
        }

    mods = _modules(scorer)
    # Record the modes as found: that is what the check is about. Only then switch to eval, so the
    # checks below see the model as inference should (the scorers also force eval in predict()).
    found = {k: modules_in_train_mode(m) for k, m in mods.items()}
    report["modules_in_train_mode"] = found
    report["modules_set_to_eval"] = sorted(k for k, names in found.items() if names)
    for m in mods.values():
        m.eval()
    for k in report["modules_set_to_eval"]:
        problems.append(f"module {k!r} was in training mode ({', '.join(found[k][:5])}"
                        + (", ..." if len(found[k]) > 5 else "") + "); diagnose switched it to eval for the other checks")
    report["trainable_params"] = {k: int(sum(p.numel() for p in m.parameters() if p.requires_grad)) for k, m in mods.items()}

    nonfinite = 0
    encoder = mods.get("encoder")
    if encoder is not None and hasattr(encoder, "embed"):
        with torch.no_grad():
            emb = encoder.embed(batch)
        nonfinite = int((~torch.isfinite(emb)).sum())
        report["embeddings"] = {"dim": int(emb.shape[1]), "nonfinite": nonfinite,
                                "mean_abs": float(emb.abs().mean()), "std_across_images": float(emb.std(0).mean()) if len(emb) > 1 else None}

    good = scorer.score(pil)
    bad = scorer.score([degrade_heavily(img, i) for i, img in enumerate(pil)])
    pairs = [(g.score_0_1, b.score_0_1) for g, b in zip(good, bad, strict=True)]
    finite = all(np.isfinite(v) for p in pairs for v in p)
    wins = float(np.mean([g > b for g, b in pairs]))
    # Every image whose degraded copy did not score lower, so a failed check can be looked at.
    failed = [{"image": n, "good": round(float(g), 4), "bad": round(float(b), 4)}
              for n, (g, b) in zip(names, pairs, strict=True) if not g > b]
    report["good_vs_bad"] = {
        "good_mean": float(np.mean([g for g, _ in pairs])),
        "bad_mean": float(np.mean([b for _, b in pairs])),
        "good_beats_bad": wins,
        "not_beaten": failed,
    }
    if nonfinite:
        problems.append(f"{nonfinite} non-finite value(s) in the embeddings")
    if not finite:
        problems.append("non-finite scores: " + ", ".join(n for n, p in zip(names, pairs, strict=True) if not np.isfinite(p).all()))
    if wins < GOOD_BEATS_BAD_MIN:
        problems.append(f"good_beats_bad {wins:.3f} < {GOOD_BEATS_BAD_MIN}: the heavily degraded copy scored at least as "
                        f"high as the original for {len(failed)} of {len(pairs)} image(s): "
                        + ", ".join(f"{f['image']} ({f['good']:.4f} vs degraded {f['bad']:.4f})" for f in failed[:10])
                        + (", ..." if len(failed) > 10 else ""))
    report["problems"] = problems
    report["ok"] = not problems
    return report
