"""Score images with a VLM the DeQA way: one batched forward, five level logits, one number.

For each image the model sees the prompt of :mod:`deqa.models.prompt` (image + question, then
the assistant's answer prefix) and we read the next-token logits of the five level tokens at
the last position. A closed-set softmax over those five logits gives the level distribution;
its expectation is the score and its spread the std. No ``generate``: one forward per batch,
and only the last position goes through the LM head (``logits_to_keep=1``), so a 150k-word
vocabulary never becomes a ``[batch, seq, vocab]`` tensor.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .levels import expected_score, score_std
from .models.config import DeQAConfig
from .models.level_tokens import resolve_level_tokens
from .models.prompt import build_prompt_text, encode_batch
from .results import ScoreResult
from .scorer import ImageInput, Scorer

__all__ = ["VLMScorer", "load_vlm_scorer"]

# Images are grouped by size within windows of this many batches: enough to cut padding for
# dynamic-resolution models, small enough that results still stream out (in input order).
_GROUP_WINDOW_BATCHES = 32


class _VLMCollate:
    """Picklable: runs the processor (resize, patchify, tokenise) inside DataLoader workers."""

    def __init__(self, processor, cfg: DeQAConfig, prompt_text: str, max_length: int | None):
        self.processor = processor
        self.cfg = cfg
        self.prompt_text = prompt_text
        self.max_length = max_length

    def __call__(self, images: list[Image.Image]):
        return encode_batch(
            self.processor,
            images,
            self.cfg,
            prompt_text=self.prompt_text,
            max_length=self.max_length,
        )


def _image_size(item: ImageInput) -> tuple[int, int]:
    """Width, height from the header only (no decode); (0, 0) if unreadable (it fails later)."""
    if isinstance(item, Image.Image):
        return item.size
    try:
        with Image.open(item) as img:
            return img.size
    except Exception:  # noqa: BLE001 - the decode step reports the real error for this file
        return (0, 0)


def _check_sizes(max_length: int | None, batch_size: int) -> None:
    # A max_length below 1 would fail every image with "prompt too long" after the model loaded.
    if max_length is not None and not (isinstance(max_length, int) and max_length >= 1):
        raise ValueError(f"max_length must be None or an int >= 1, got {max_length!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


class VLMScorer(Scorer):
    """A transformers VLM as a quality scorer.

    Args:
        model: a loaded ``...ForConditionalGeneration`` (or peft model), eval mode.
        processor: its ``AutoProcessor``.
        config: prompt and level settings (``deqa_config.json``).
        model_id: how results name the model.
        device / dtype: where inputs go; floating image tensors are cast to ``dtype``.
        group_by_size: batch images of similar size together (less padding for models whose
            image-token count follows the image size, e.g. Qwen2-VL). ``None``: on for such
            models.
        max_length: longest prompt allowed (see :func:`deqa.models.prompt.encode_batch`).
        batch_size: default batch size for :meth:`iter_score`.
    """

    def __init__(
        self,
        model,
        processor,
        config: DeQAConfig,
        *,
        model_id: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        group_by_size: bool | None = None,
        max_length: int | None = None,
        batch_size: int = 8,
    ):
        self.model = model
        self.processor = processor
        self.config = config
        self.model_id = model_id
        self.level_words = tuple(config.level_words)
        self.level_values = np.asarray(config.level_values, dtype=np.float64)
        first = next(model.parameters())
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = (
            dtype
            if dtype is not None
            else (first.dtype if first.is_floating_point() else torch.float32)
        )
        _check_sizes(max_length, batch_size)
        self.max_length = max_length
        self.default_batch_size = batch_size
        self.prompt_text = build_prompt_text(processor, config)
        self.level_token_ids = resolve_level_tokens(
            processor.tokenizer, config.level_words, self.prompt_text
        )
        self._level_index = torch.tensor(self.level_token_ids, device=self.device)
        if group_by_size is None:
            # Qwen2/2.5/3-VL image processors resize to a pixel budget and merge patches, so the
            # number of image tokens varies with the image's shape.
            group_by_size = hasattr(getattr(processor, "image_processor", None), "merge_size")
        self.group_by_size = group_by_size
        forward = getattr(model, "get_base_model", lambda: model)().forward
        self._logits_to_keep = "logits_to_keep" in inspect.signature(forward).parameters

    # -- Scorer hooks ---------------------------------------------------------------------------
    def make_collate(self):
        return _VLMCollate(self.processor, self.config, self.prompt_text, self.max_length)

    def batch_order(self, inputs: Sequence[ImageInput], batch_size: int) -> list[list[int]]:
        if not self.group_by_size:
            return super().batch_order(inputs, batch_size)
        window = batch_size * _GROUP_WINDOW_BATCHES
        batches = []
        for start in range(0, len(inputs), window):
            idx = list(range(start, min(start + window, len(inputs))))
            sizes = {i: _image_size(inputs[i]) for i in idx}
            # Sort by area then aspect ratio: neighbours get the same number of image tokens.
            idx.sort(key=lambda i: (sizes[i][0] * sizes[i][1], sizes[i][0] / max(sizes[i][1], 1)))
            batches += [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
        return batches

    @torch.inference_mode()
    def level_logits(self, batch) -> torch.Tensor:
        """``[B, K]`` float32 logits of the K level tokens at the position after the prompt."""
        inputs: dict[str, Any] = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, non_blocking=True)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            inputs[key] = value
        if self._logits_to_keep:
            out = self.model(**inputs, use_cache=False, logits_to_keep=1)
            last = out.logits[:, -1]
        else:
            # Models without logits_to_keep (remote code): run the backbone, then the LM head
            # on the last position only.
            base = getattr(self.model, "get_base_model", lambda: self.model)()
            hidden = base.model(**inputs, use_cache=False).last_hidden_state[:, -1]
            last = base.get_output_embeddings()(hidden)
        return last.index_select(-1, self._level_index).float()

    def level_probs(self, batch) -> torch.Tensor:
        """``[B, K]`` closed-set softmax over the level logits (rows sum to 1)."""
        return torch.softmax(self.level_logits(batch), dim=-1)

    def predict(self, batch) -> list[ScoreResult]:
        probs = self.level_probs(batch).cpu().double().numpy()
        scores = expected_score(probs, self.level_values)
        stds = score_std(probs, self.level_values)
        lo, hi = self.level_values[0], self.level_values[-1]
        out = []
        for p, s, sd in zip(probs, scores, stds, strict=True):
            out.append(
                ScoreResult(
                    input="",
                    score=float(s),
                    score_0_1=float((s - lo) / (hi - lo)),
                    level=self.level_words[int(np.argmax(p))],
                    model=self.model_id,
                    std=float(sd),
                    probs={w: float(x) for w, x in zip(self.level_words, p, strict=True)},
                )
            )
        return out


def load_vlm_scorer(
    model: str,
    *,
    adapter: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    trust_remote_code: bool = False,
    group_by_size: bool | None = None,
    max_length: int | None = None,
    batch_size: int = 8,
) -> VLMScorer:
    """Load a VLM (hub id, folder, deqa checkpoint, or base + ``adapter``) as a :class:`VLMScorer`.

    See :func:`deqa.models.loading.load_vlm` for the loading options.
    """
    from .models.loading import load_vlm

    _check_sizes(max_length, batch_size)  # before the weights load, not after
    vlm = load_vlm(
        model,
        adapter,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        load_in_4bit=load_in_4bit,
        load_in_8bit=load_in_8bit,
        trust_remote_code=trust_remote_code,
    )
    return VLMScorer(
        vlm.model,
        vlm.processor,
        vlm.config,
        model_id=vlm.model_id,
        device=vlm.device,
        dtype=vlm.dtype,
        group_by_size=group_by_size,
        max_length=max_length,
        batch_size=batch_size,
    )
