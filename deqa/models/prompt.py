"""The one place that turns images into model inputs, for scoring *and* training.

Both paths build the same sequence with the processor's own chat template::

    [system turn, if the template or config has one]
    user:      <image> + question
    assistant: answer_prefix                      <- continued (continue_final_message), not a new turn
    ----------------------------------------------- scoring stops here: the next token is the level
               " " + level_word + answer_suffix + end-of-turn      <- training only

Scoring feeds the prompt and reads the next-token logits at the last position. Training appends
the answer tokens to *the same prompt ids*, so the level token sits at index ``len(prompt_ids)``
by construction, and :func:`encode_batch` checks that the token there is the level token.
Scoring and training can therefore never drift apart.

API used by the trainer (all arguments are plain transformers objects)::

    text  = build_prompt_text(processor, cfg)                 # chat-templated prompt, for inspection
    ids   = resolve_level_tokens(processor.tokenizer, cfg.level_words, text)
    batch = encode_batch(processor, images, cfg, answers=["good", "fair"], level_token_ids=ids)
    # batch: input_ids, attention_mask, pixel tensors, labels, level_positions
    # logits predicting the level token: out.logits[arange(B), batch["level_positions"] - 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .config import DeQAConfig

__all__ = [
    "IGNORE_INDEX",
    "build_messages",
    "build_prompt_text",
    "answer_tail_text",
    "encode_batch",
    "PromptTooLongError",
]

# transformers' convention for "no loss here" in labels.
IGNORE_INDEX = -100


class PromptTooLongError(ValueError):
    """A sequence does not fit ``max_length`` without cutting the image tokens or the level.

    ``index``: the sample of the batch; ``detail``: the message without it (for a caller that
    knows the sample's name, such as the training collator).
    """

    index: int | None = None
    detail: str | None = None


def build_messages(cfg: DeQAConfig, *, answer: str | None = None) -> list[dict[str, Any]]:
    """The conversation in transformers' multimodal chat format.

    ``answer`` is the assistant text; ``None`` means the answer prefix only (to be continued).
    """
    messages: list[dict[str, Any]] = []
    if cfg.system_prompt is not None:
        messages.append(
            {"role": "system", "content": [{"type": "text", "text": cfg.system_prompt}]}
        )
    messages.append(
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": cfg.question}]}
    )
    text = cfg.answer_prefix if answer is None else answer
    messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    return messages


def _template_owner(processor):
    # A processor with a chat template renders it; a bare tokenizer (text-only use) also works.
    if getattr(processor, "chat_template", None):
        return processor
    tok = getattr(processor, "tokenizer", processor)
    if getattr(tok, "chat_template", None):
        return tok
    raise ValueError(
        f"{type(processor).__name__} has no chat template; deqa builds its prompt with the model's chat "
        "template (save one with the processor, e.g. processor.chat_template = '...')"
    )


def build_prompt_text(processor, cfg: DeQAConfig) -> str:
    """The chat-templated prompt, ending with ``cfg.answer_prefix`` (the level comes next).

    The image appears as the template's placeholder (e.g. ``<|vision_start|><|image_pad|>...``);
    the processor expands it into the image's tokens when the text is encoded.
    """
    text = _template_owner(processor).apply_chat_template(
        build_messages(cfg),
        continue_final_message=True,
        add_generation_prompt=False,
        tokenize=False,
    )
    if isinstance(text, list):  # some versions return one string per conversation
        text = text[0]
    if not text.endswith(cfg.answer_prefix):
        raise ValueError(
            f"the chat template did not end the prompt with the answer prefix {cfg.answer_prefix!r} "
            f"(got ...{text[-60:]!r}); the template must support continue_final_message"
        )
    return text


def answer_tail_text(processor, cfg: DeQAConfig, level_word: str) -> str:
    """What follows the prompt in a training sequence: ``" good." + end-of-turn``.

    The end of turn is what the chat template writes after the assistant's message (e.g.
    ``<|im_end|>``), trailing whitespace dropped; if the template writes no special token there,
    the tokenizer's EOS is used so the model still learns to stop.
    """
    answer = f"{cfg.answer_prefix} {level_word}{cfg.answer_suffix}"
    rendered = _template_owner(processor).apply_chat_template(
        build_messages(cfg, answer=answer), add_generation_prompt=False, tokenize=False
    )
    if isinstance(rendered, list):
        rendered = rendered[0]
    at = rendered.rfind(answer)
    if at < 0:
        raise ValueError(f"the chat template dropped or altered the assistant answer {answer!r}")
    end_of_turn = rendered[at + len(answer) :].rstrip()
    tok = getattr(processor, "tokenizer", processor)
    # Chat markers such as <end_of_turn> are added special tokens without a named role.
    specials = set(tok.all_special_tokens) | {
        t.content for t in tok.added_tokens_decoder.values() if t.special
    }
    if not any(s in end_of_turn for s in specials if s):
        end_of_turn = end_of_turn + (tok.eos_token or "")
    return f" {level_word}{cfg.answer_suffix}{end_of_turn}"


def _tail_ids(tok, prompt_text: str, tail_text: str) -> list[int]:
    # Tokenise prompt and prompt+tail as text and keep what is new: the same rule that resolves
    # the level tokens, so the first tail id is the level token the scorer reads.
    before = tok(prompt_text, add_special_tokens=False)["input_ids"]
    after = tok(prompt_text + tail_text, add_special_tokens=False)["input_ids"]
    if after[: len(before)] != before:
        raise ValueError(
            f"appending {tail_text!r} re-tokenises the end of the prompt; use an answer_prefix ending in a whole word"
        )
    return list(after[len(before) :])


def _nest(images: Sequence) -> list[list]:
    # One image per sample, as a nested list: the layout every family accepts (Idefics3/SmolVLM need it).
    return [[img] for img in images]


def encode_batch(
    processor,
    images: Sequence,
    cfg: DeQAConfig,
    *,
    answers: Sequence[str] | None = None,
    level_token_ids: Sequence[int] | None = None,
    padding_side: str | None = None,
    max_length: int | None = None,
    prompt_text: str | None = None,
):
    """Encode one image per sample into model inputs.

    Args:
        processor: the model's ``AutoProcessor``.
        images: decoded RGB PIL images (see :func:`deqa.imageio.load_image`).
        cfg: prompt settings.
        answers: ``None`` for scoring (prompt only). For training, one level word per image
            (one of ``cfg.level_words``, e.g. the argmax of the soft label); the sequence then
            continues with ``" " + word + answer_suffix + end-of-turn``.
        level_token_ids: the ids from :func:`~deqa.models.level_tokens.resolve_level_tokens`;
            with ``answers``, every sample is checked to hold its level token at its level
            position (resolved here if omitted).
        padding_side: ``"left"`` (default for scoring: the level logits are then at position -1
            for every row) or ``"right"`` (default for training).
        max_length: longest allowed sequence. A prompt that does not fit (which would cut image
            tokens or the level) raises :class:`PromptTooLongError`; for training only the
            answer's tail after the level token may be cut.
        prompt_text: a precomputed :func:`build_prompt_text` (saves re-rendering per batch).

    Returns:
        A ``transformers.BatchFeature`` (``.to(device)`` works) with ``input_ids`` and
        ``attention_mask`` ``[B, L]``, the processor's image tensors (``pixel_values`` and
        family-specific ones such as ``image_grid_thw`` or ``pixel_attention_mask``) and, for
        training, ``labels`` ``[B, L]`` (answer tokens only: level token, suffix, end of turn;
        ``IGNORE_INDEX`` elsewhere) and ``level_positions`` ``[B]``: the index of each row's
        level token in ``input_ids``. The logits that predict it are at ``level_positions - 1``;
        for scoring that is the last position, ``L - 1``.
    """
    from transformers import BatchFeature

    images = list(images)
    if not images:
        raise ValueError("encode_batch needs at least one image")
    if answers is not None and len(answers) != len(images):
        raise ValueError(f"got {len(answers)} answers for {len(images)} images")
    tok = getattr(processor, "tokenizer", processor)
    if prompt_text is None:
        prompt_text = build_prompt_text(processor, cfg)
    training = answers is not None
    padding_side = padding_side or ("right" if training else "left")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    # A template that writes BOS itself (Gemma, Idefics3) must not get a second one from the
    # tokenizer; one that does not (LLaVA) relies on the tokenizer adding it.
    add_special = not (tok.bos_token and prompt_text.startswith(tok.bos_token))
    enc = processor(
        text=[prompt_text] * len(images),
        images=_nest(images),
        padding=True,
        padding_side="left",
        add_special_tokens=add_special,
        return_tensors="pt",
        **cfg.processor_kwargs,
    )
    input_ids = enc["input_ids"]
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    too_long = [
        i
        for i, n in enumerate(lengths)
        if max_length is not None and n + int(training) > max_length
    ]
    if too_long:
        i = too_long[0]
        detail = (
            f"the prompt is {lengths[i]} tokens (image tokens included), over max_length={max_length}; "
            "truncating it would cut image tokens or the level position. Raise max_length or make the "
            "processor produce fewer image tokens (e.g. smaller max_pixels / image size)."
        )
        err = PromptTooLongError(f"sample {i}: {detail}")
        err.index, err.detail = i, detail
        raise err
    if not training:
        if padding_side == "right":
            enc = _repad(
                enc,
                [ids[-n:] for ids, n in zip(input_ids.tolist(), lengths, strict=True)],
                tok.pad_token_id,
                "right",
            )
        return enc

    if level_token_ids is None:
        from .level_tokens import resolve_level_tokens

        level_token_ids = resolve_level_tokens(tok, cfg.level_words, prompt_text)
    word_to_id = dict(zip(cfg.level_words, level_token_ids, strict=True))
    tails: dict[str, list[int]] = {}
    rows, label_rows, positions = [], [], []
    for i, (ids, n, word) in enumerate(zip(input_ids.tolist(), lengths, answers, strict=True)):
        if word not in word_to_id:
            raise ValueError(
                f"answer {i} is {word!r}, not one of the level words {list(cfg.level_words)}"
            )
        if word not in tails:
            tails[word] = _tail_ids(tok, prompt_text, answer_tail_text(processor, cfg, word))
        prompt_ids = ids[-n:]  # rows come left-padded from the processor
        row = prompt_ids + tails[word]
        if max_length is not None:
            row = row[:max_length]
        if row[len(prompt_ids)] != word_to_id[word]:
            got = tok.convert_ids_to_tokens(row[len(prompt_ids)])
            want = tok.convert_ids_to_tokens(word_to_id[word])
            raise ValueError(
                f"sample {i}: token after the prompt is {got!r}, expected the level token {want!r} for {word!r}"
            )
        rows.append(row)
        label_rows.append([IGNORE_INDEX] * len(prompt_ids) + row[len(prompt_ids) :])
        positions.append(len(prompt_ids))
    out = _repad(enc, rows, tok.pad_token_id, padding_side)
    width = out["input_ids"].shape[1]
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for r, lab in enumerate(label_rows):
        start = 0 if padding_side == "right" else width - len(lab)
        labels[r, start : start + len(lab)] = torch.tensor(lab, dtype=torch.long)
        if padding_side == "left":
            positions[r] += start
    data = dict(out)
    data["labels"] = labels
    data["level_positions"] = torch.tensor(positions, dtype=torch.long)
    return BatchFeature(data=data)


def _repad(enc, rows: list[list[int]], pad_id: int | None, side: str):
    """Rebuild ``enc`` with new token rows, padding every per-token tensor consistently.

    Per-token tensors besides ids and mask (``token_type_ids``, ``mm_token_type_ids``) keep their
    prompt values; appended positions get 0 (= text token).
    """
    from transformers import BatchFeature

    if pad_id is None:
        raise ValueError(
            "the tokenizer has no pad token; set tokenizer.pad_token before encoding batches"
        )
    old_ids = enc["input_ids"]
    old_len = enc["attention_mask"].sum(dim=1).tolist()
    width = max(len(r) for r in rows)
    per_token = [
        k
        for k, v in enc.items()
        if torch.is_tensor(v)
        and v.shape == old_ids.shape
        and k not in ("input_ids", "attention_mask")
    ]
    ids = torch.full((len(rows), width), pad_id, dtype=old_ids.dtype)
    mask = torch.zeros((len(rows), width), dtype=enc["attention_mask"].dtype)
    extra = {k: torch.zeros((len(rows), width), dtype=enc[k].dtype) for k in per_token}
    for r, row in enumerate(rows):
        start = 0 if side == "right" else width - len(row)
        ids[r, start : start + len(row)] = torch.tensor(row, dtype=old_ids.dtype)
        mask[r, start : start + len(row)] = 1
        n = min(old_len[r], len(row))
        for k in per_token:
            extra[k][r, start : start + n] = enc[k][r, old_ids.shape[1] - old_len[r] :][:n]
    data = {
        k: v
        for k, v in enc.items()
        if k not in per_token and k not in ("input_ids", "attention_mask")
    }
    data.update(input_ids=ids, attention_mask=mask, **extra)
    return BatchFeature(data=data)
