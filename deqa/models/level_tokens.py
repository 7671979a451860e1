"""Level words -> the single token ids a model emits for them right after the answer prefix.

DeQA reads the quality distribution from the logits of *one* position, so each level word must
be exactly one token *in context*. Tokenisers disagree about what that token is: byte-level BPE
(Qwen, Llama 3) emits ``"Ġgood"`` (leading space) not ``"good"``; SentencePiece emits
``"▁good"``; Qwen has no BOS; rarer words split into pieces. Instead of guessing the form, we
tokenise the context with and without ``" " + word`` and take what is new, which is by
definition what the model would have to produce there.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..levels import LEVEL_WORDS

__all__ = ["LevelTokenError", "resolve_level_tokens", "level_token_split"]

# Single-word alternatives worth trying when a level word splits (listed by level meaning).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "bad": ("terrible", "awful", "low", "worst", "horrible"),
    "poor": ("low", "weak", "mediocre", "inferior"),
    "fair": ("average", "okay", "ok", "medium", "moderate", "acceptable", "normal"),
    "good": ("fine", "nice", "decent", "high", "great"),
    "excellent": ("great", "perfect", "superb", "outstanding", "best", "high"),
}


class LevelTokenError(ValueError):
    """Level words that are not distinct single tokens after the answer prefix."""


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def level_token_split(tokenizer, word: str, context: str) -> tuple[list[int], list[str]]:
    """Ids and token strings that ``" " + word`` adds after ``context``.

    Raises :class:`LevelTokenError` if adding the word re-tokenises the end of ``context``
    (then no token position after the context corresponds to the word).
    """
    before = _ids(tokenizer, context)
    after = _ids(tokenizer, f"{context} {word}")
    if after[: len(before)] != before:
        raise LevelTokenError(
            f"appending {' ' + word!r} changes how the end of the answer prefix tokenises "
            f"({tokenizer.convert_ids_to_tokens(before[-3:])} -> {tokenizer.convert_ids_to_tokens(after[len(before) - 3 :])}); "
            "choose an answer_prefix that ends in a complete word"
        )
    new = after[len(before) :]
    return new, tokenizer.convert_ids_to_tokens(new)


def _single_token(tokenizer, word: str, context: str) -> int | None:
    try:
        ids, _ = level_token_split(tokenizer, word, context)
    except LevelTokenError:
        return None
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        return None
    return ids[0]


def _suggestions(
    tokenizer, word: str, context: str, taken: set[int], meaning: str | None
) -> list[str]:
    # Case variants first, then words with the same meaning: the word's own synonyms, and for a
    # five-level scale the standard word of that level and its synonyms.
    candidates = [word.capitalize(), word.lower(), word.upper(), *_SYNONYMS.get(word.lower(), ())]
    if meaning is not None:
        candidates += [meaning, *_SYNONYMS[meaning]]
    out = []
    for cand in dict.fromkeys(candidates):
        if cand == word:
            continue
        tid = _single_token(tokenizer, cand, context)
        if tid is not None and tid not in taken:
            out.append(cand)
    return out


def resolve_level_tokens(tokenizer, level_words: Sequence[str], context: str) -> list[int]:
    """One token id per level word: the token the model emits for it right after ``context``.

    Args:
        tokenizer: a transformers tokenizer (or a processor's ``.tokenizer``).
        level_words: the level words, in deqa's ascending order.
        context: the text the word follows, after one space. Pass the full chat-templated prompt
            (:func:`deqa.models.prompt.build_prompt_text`) so the tokenisation is exactly the
            one used at scoring time; the bare answer prefix also works for most tokenisers.

    Raises:
        LevelTokenError: a word splits into several tokens (or is unknown), or two words share a
            token. The message shows how each word splits and suggests single-token
            alternatives found in this vocabulary.
    """
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    ids: list[int] = []
    problems: list[str] = []
    splits: dict[str, tuple[list[int], list[str]]] = {}
    for word in level_words:
        new, pieces = level_token_split(tokenizer, word, context)
        splits[word] = (new, pieces)
        if len(new) == 1 and new[0] != tokenizer.unk_token_id:
            ids.append(new[0])
            continue
        ids.append(-1)
    taken = {i for i in ids if i >= 0}
    standard = len(level_words) == len(LEVEL_WORDS)
    for index, (word, tid) in enumerate(zip(level_words, ids, strict=True)):
        if tid >= 0:
            continue
        new, pieces = splits[word]
        if not new:
            how = "adds no token at all"
        elif len(new) == 1:
            how = f"is the unknown token {pieces[0]!r}"
        else:
            how = f"splits into {len(new)} tokens {pieces}"
            if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in new:
                how += " (it has characters this vocabulary does not know)"
        alts = _suggestions(
            tokenizer, word, context, taken, LEVEL_WORDS[index] if standard else None
        )
        hint = (
            f" Single-token alternatives in this vocabulary: {', '.join(repr(a) for a in alts)}."
            if alts
            else ""
        )
        problems.append(f"level word {word!r} {how} after the answer prefix.{hint}")
    seen: dict[int, str] = {}
    for word, tid in zip(level_words, ids, strict=True):
        if tid < 0:
            continue
        if tid in seen:
            token = tokenizer.convert_ids_to_tokens(tid)
            problems.append(
                f"level words {seen[tid]!r} and {word!r} map to the same token {token!r}"
            )
        seen.setdefault(tid, word)
    if problems:
        raise LevelTokenError(
            "deqa reads quality from one token per level word, but: "
            + " ".join(problems)
            + " Set level_words in deqa_config.json to words that are distinct single tokens."
        )
    return ids
