"""Batches for DeQA training: images + soft labels -> model inputs, answer labels, level positions.

The sequence is built by :func:`deqa.models.prompt.encode_batch`, the same code the scorer
uses, so the training prompt and the scoring prompt cannot drift apart. The answer is
``"The quality of the image is {level}."`` with ``level`` the soft label's most likely word; the
level position is known by construction (the first token after the prompt) and checked to hold
that level's token. Rows are left-padded so that every answer sits at the end of its row and the
trainer needs logits only for the last few positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models.config import DeQAConfig
from ..models.prompt import PromptTooLongError, build_prompt_text, encode_batch
from .data import TrainingDataError, collate_examples

__all__ = ["DeQACollator"]


class DeQACollator:
    """Callable collate_fn: dataset items (lists of 1 or 2 examples) -> one model batch.

    The batch holds the processor's tensors (input_ids, attention_mask, pixel tensors), plus
    ``labels`` [N, L] (answer tokens only), ``level_positions`` [N], ``level_probs`` [N, K]
    (soft labels), ``mos`` / ``mos_std`` [N] (level scale) and ``pair_a`` / ``pair_b`` [P]
    (indices of the fidelity pairs; empty for single items). N = number of images.
    Picklable, so it runs in DataLoader workers. A prompt over ``max_length`` raises
    :class:`~deqa.training.data.TrainingDataError` naming the image.
    """

    def __init__(
        self,
        processor,
        config: DeQAConfig,
        level_token_ids: Sequence[int],
        *,
        max_length: int | None = None,
    ):
        self.processor = processor
        self.config = config
        self.level_token_ids = list(level_token_ids)
        self.max_length = max_length
        self.prompt_text = build_prompt_text(processor, config)

    def __call__(self, items: Sequence[Sequence[dict]]) -> dict[str, torch.Tensor]:
        examples, pair_a, pair_b = collate_examples(items)
        probs = torch.tensor([ex["probs"] for ex in examples], dtype=torch.float32)
        if probs.shape[1] != len(self.config.level_words):
            raise ValueError(
                f"soft labels have {probs.shape[1]} levels but the model has "
                f"{len(self.config.level_words)} level words {list(self.config.level_words)}"
            )
        answers = [self.config.level_words[i] for i in probs.argmax(dim=1).tolist()]
        try:
            batch = encode_batch(
                self.processor,
                [ex["image"] for ex in examples],
                self.config,
                answers=answers,
                level_token_ids=self.level_token_ids,
                padding_side="left",
                max_length=self.max_length,
                prompt_text=self.prompt_text,
            )
        except PromptTooLongError as err:
            if err.index is None:
                raise
            raise TrainingDataError(f"{examples[err.index]['path']}: {err.detail}") from None
        out = dict(batch)
        out["level_probs"] = probs
        out["mos"] = torch.tensor([ex["mos"] for ex in examples], dtype=torch.float32)
        out["mos_std"] = torch.tensor([ex["std"] for ex in examples], dtype=torch.float32)
        out["pair_a"] = pair_a
        out["pair_b"] = pair_b
        return out
