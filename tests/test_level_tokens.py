"""Level words -> single in-context tokens, and the errors when they are not."""

import json

import pytest

from deqa.levels import LEVEL_WORDS
from deqa.models.config import DEQA_CONFIG_NAME, DeQAConfig
from deqa.models.level_tokens import LevelTokenError, level_token_split, resolve_level_tokens
from deqa.models.prompt import build_prompt_text
from deqa.models.tiny import FAMILIES, build_tiny_tokenizer

PREFIX = "The quality of the image is"


@pytest.mark.parametrize("family", FAMILIES)
def test_resolves_five_distinct_tokens_in_context(family, tiny_vlm):
    _, processor = tiny_vlm(family)
    tok = processor.tokenizer
    context = build_prompt_text(processor, DeQAConfig())
    ids = resolve_level_tokens(tok, LEVEL_WORDS, context)
    assert len(set(ids)) == 5
    tokens = tok.convert_ids_to_tokens(ids)
    # The emitted form carries the leading space: "Ġgood" (byte-level) or "▁good" (SentencePiece).
    marker = "▁" if tokens[0].startswith("▁") else "Ġ"
    assert tokens == [marker + w for w in LEVEL_WORDS]
    # The bare prefix as context resolves the same ids; the processor itself is accepted too.
    assert resolve_level_tokens(processor, LEVEL_WORDS, PREFIX) == ids


def test_leading_space_form_differs_from_bare_word_and_qwen_has_no_bos(tiny_vlm):
    _, processor = tiny_vlm("qwen2_5_vl")
    tok = processor.tokenizer
    assert tok.bos_token is None
    (good,) = resolve_level_tokens(tok, ["good"], PREFIX)
    bare = tok.convert_tokens_to_ids("good")
    assert bare != tok.unk_token_id and good != bare
    assert tok.convert_ids_to_tokens(good) == "Ġgood"


def test_sentencepiece_tokenizer_adds_bos_but_resolution_ignores_it(tiny_vlm):
    _, processor = tiny_vlm("llava")
    tok = processor.tokenizer
    assert tok("x")["input_ids"][0] == tok.bos_token_id
    assert tok.convert_ids_to_tokens(resolve_level_tokens(tok, ["fair"], PREFIX)) == ["▁fair"]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_split_word_error_shows_pieces_and_suggests_synonyms(family, tiny_vlm):
    _, processor = tiny_vlm(family)
    words = ("bad", "poor", "fair", "good", "superb")
    with pytest.raises(LevelTokenError) as info:
        resolve_level_tokens(processor.tokenizer, words, PREFIX)
    msg = str(info.value)
    ids, pieces = level_token_split(processor.tokenizer, "superb", PREFIX)
    assert len(ids) > 1
    assert f"'superb' splits into {len(ids)} tokens {pieces}" in msg
    # "superb" sits at the "excellent" level: that word and its single-token synonyms are offered.
    assert "alternatives in this vocabulary: 'excellent', 'great', 'perfect'" in msg
    assert "deqa_config.json" in msg


def test_suggests_the_capitalised_form_when_only_it_is_one_token():
    tok = build_tiny_tokenizer(
        "bytelevel",
        special_tokens=[],
        bos_token=None,
        eos_token="<eos>",
        pad_token="<pad>",
        words=["Superb"],
    )
    assert len(level_token_split(tok, "Superb", PREFIX)[0]) == 1
    with pytest.raises(
        LevelTokenError, match=r"'superb' splits .* alternatives in this vocabulary: 'Superb'"
    ):
        resolve_level_tokens(tok, ["bad", "poor", "fair", "good", "superb"], PREFIX)
    assert len(resolve_level_tokens(tok, ["bad", "poor", "fair", "good", "Superb"], PREFIX)) == 5


def test_unknown_token_is_an_error(tiny_vlm):
    _, processor = tiny_vlm("llava")  # SentencePiece-style, has <unk>
    with pytest.raises(
        LevelTokenError, match=r"'ü' splits into 2 tokens \['▁', '<unk>'\] \(it has characters"
    ):
        resolve_level_tokens(processor.tokenizer, ["bad", "ü"], PREFIX)


class _CaseFoldingTokenizer:
    """A stand-in tokenizer that lower-cases (like some uncased vocabularies): Good == good."""

    unk_token_id = 0

    def __init__(self):
        self.vocab = {"<unk>": 0}

    def _id(self, word):
        return self.vocab.setdefault(word.lower(), len(self.vocab))

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self._id(w) for w in text.split(" ")]}

    def convert_ids_to_tokens(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return inv[ids] if isinstance(ids, int) else [inv[i] for i in ids]


def test_two_words_on_one_token_is_an_error():
    with pytest.raises(LevelTokenError, match="'good' and 'Good' map to the same token 'good'"):
        resolve_level_tokens(_CaseFoldingTokenizer(), ["bad", "good", "Good"], PREFIX)


class _ClosedVocabTokenizer(_CaseFoldingTokenizer):
    """A word-level vocabulary: words it does not know become <unk> (id 0)."""

    def _id(self, word):
        return 0 if word == "zzz" else super()._id(word)


def test_word_that_is_the_unknown_token_is_an_error():
    with pytest.raises(LevelTokenError, match="'zzz' is the unknown token '<unk>'"):
        resolve_level_tokens(_ClosedVocabTokenizer(), ["bad", "zzz"], PREFIX)


class _MergingTokenizer(_CaseFoldingTokenizer):
    """Merges "is good" into one token, so the prefix's last token changes when the word follows."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self._id(w) for w in text.replace("is good", "is_good").split(" ")]}


def test_prefix_that_retokenises_is_an_error():
    with pytest.raises(LevelTokenError, match="changes how the end of the answer prefix tokenises"):
        resolve_level_tokens(_MergingTokenizer(), ["bad", "good"], PREFIX)


# -- deqa_config.json ---------------------------------------------------------------------------
def test_config_defaults_round_trip_and_unknown_keys(tmp_path):
    cfg = DeQAConfig.for_base_model("Qwen/Qwen2.5-VL-7B-Instruct")
    assert cfg.level_words == LEVEL_WORDS and cfg.level_values == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert cfg.question == "How would you rate the quality of this image?"
    assert (cfg.answer_prefix, cfg.answer_suffix) == ("The quality of the image is", ".")
    path = cfg.save(tmp_path)
    assert path.name == DEQA_CONFIG_NAME
    assert DeQAConfig.load(tmp_path) == cfg == DeQAConfig.load(path)
    assert (
        DeQAConfig.find(tmp_path / "nope", tmp_path) == cfg
        and DeQAConfig.find(tmp_path / "nope") is None
    )
    data = json.loads(path.read_text())
    data["level_word"] = ["x"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"deqa_config.json: unknown key\(s\) \['level_word'\]"):
        DeQAConfig.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="deqa_config.json: not valid JSON"):
        DeQAConfig.load(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(level_words=("bad", "good"), level_values=(1, 2, 3)), "one value per word"),
        (dict(level_words=("good", "good"), level_values=(1, 2)), "distinct"),
        (dict(level_words=("very bad", "good"), level_values=(1, 2)), "without spaces"),
        (dict(level_values=(5, 4, 3, 2, 1)), "strictly increasing"),
        (dict(answer_prefix="The quality is "), "ends with whitespace"),
        (dict(question="  "), "question must not be empty"),
        (dict(level_words=("good",), level_values=(1,)), "at least two"),
        # kinds a JSON file can hold that used to slip through (NaN scores, letters as words, a traceback)
        (dict(level_values=(1, 2, 3, 4, float("nan"))), r"level_values must be finite numbers, got \[nan\]"),
        (dict(level_values=(1, 2, 3, 4, "5")), "level_values must be finite numbers"),
        (dict(level_words="abcde"), "level_words must be a list of words, got 'abcde'"),
        (dict(level_words=None), "level_words must be a list of words, got None"),
        (dict(question=5), "question must be a string, got 5"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeQAConfig(**kwargs)
