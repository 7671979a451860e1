"""One prompt for scoring and training: exact text, padding, labels, level position by construction."""

import pytest
import torch

from deqa.levels import LEVEL_WORDS
from deqa.models.config import DeQAConfig
from deqa.models.level_tokens import resolve_level_tokens
from deqa.models.prompt import (
    IGNORE_INDEX,
    PromptTooLongError,
    answer_tail_text,
    build_messages,
    build_prompt_text,
    encode_batch,
)
from deqa.models.tiny import FAMILIES

CFG = DeQAConfig()
Q = "How would you rate the quality of this image?"
A = "The quality of the image is"

EXPECTED_PROMPT = {
    "qwen2_5_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    f"<|vision_start|><|image_pad|><|vision_end|>{Q}<|im_end|>\n<|im_start|>assistant\n{A}",
    "llava": f"USER: <image>\n{Q} ASSISTANT: {A}",
    "idefics3": f"<|begin_of_text|>User:<image>{Q}<end_of_utterance>\nAssistant: {A}",
    "gemma3": f"<bos><start_of_turn>user\n<start_of_image>{Q}<end_of_turn>\n<start_of_turn>model\n{A}",
}
END_OF_TURN = {
    "qwen2_5_vl": "<|im_end|>",
    "llava": "</s>",
    "idefics3": "<end_of_utterance>",
    "gemma3": "<end_of_turn>",
}


def test_messages_image_then_question_then_continued_answer():
    msgs = build_messages(CFG)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"] == [{"type": "image"}, {"type": "text", "text": Q}]
    assert msgs[1]["content"] == [{"type": "text", "text": A}]
    sys_msgs = build_messages(DeQAConfig(system_prompt="Rate images."), answer=f"{A} good.")
    assert sys_msgs[0] == {"role": "system", "content": [{"type": "text", "text": "Rate images."}]}
    assert sys_msgs[-1]["content"][0]["text"] == f"{A} good."


@pytest.mark.parametrize("family", sorted(EXPECTED_PROMPT))
def test_prompt_text_is_the_family_chat_format(family, tiny_vlm):
    _, processor = tiny_vlm(family)
    assert build_prompt_text(processor, CFG) == EXPECTED_PROMPT[family]
    assert answer_tail_text(processor, CFG, "good") == f" good.{END_OF_TURN[family]}"


def test_custom_system_prompt_and_question(tiny_vlm):
    _, processor = tiny_vlm("qwen2_5_vl")
    cfg = DeQAConfig(
        system_prompt="You rate images.", question="Rate this image.", answer_prefix="Rating:"
    )
    text = build_prompt_text(processor, cfg)
    assert text.startswith("<|im_start|>system\nYou rate images.<|im_end|>")
    assert "You are a helpful assistant." not in text
    assert text.endswith("<|vision_end|>Rate this image.<|im_end|>\n<|im_start|>assistant\nRating:")


def _count(ids, token_id):
    return int((ids == token_id).sum())


@pytest.mark.parametrize("family", FAMILIES)
def test_scoring_batch_is_left_padded_and_ends_with_the_prefix(family, tiny_vlm, sample_images):
    _, processor = tiny_vlm(family)
    tok = processor.tokenizer
    batch = encode_batch(processor, sample_images, CFG)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == len(sample_images) and mask.shape == ids.shape
    assert bool(mask[:, -1].all()), "left padding: every row's last position is real"
    prefix_ids = tok(" " + A if family != "qwen2_5_vl" else "\n" + A, add_special_tokens=False)[
        "input_ids"
    ]
    tail = len(tok(" is", add_special_tokens=False)["input_ids"])
    for row in ids:
        assert row[-tail:].tolist() == prefix_ids[-tail:]
    if tok.bos_token_id is not None:  # one BOS, whether the template or the tokenizer writes it
        assert all(_count(row, tok.bos_token_id) == 1 for row in ids)
    image_id = tok.convert_tokens_to_ids(processor.image_token)
    counts = [_count(row, image_id) for row in ids]
    assert min(counts) > 0
    if family.startswith("qwen"):
        assert len(set(counts)) > 1, "dynamic resolution: token count follows the image shape"
    assert "labels" not in batch and "level_positions" not in batch


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_training_batch_level_position_and_labels(family, side, tiny_vlm, sample_images):
    model, processor = tiny_vlm(family)
    tok = processor.tokenizer
    ids = resolve_level_tokens(tok, CFG.level_words, build_prompt_text(processor, CFG))
    answers = ["good", "bad", "excellent", "fair", "poor"]
    batch = encode_batch(
        processor, sample_images, CFG, answers=answers, level_token_ids=ids, padding_side=side
    )
    pos = batch["level_positions"]
    rows = torch.arange(len(answers))
    want = torch.tensor([ids[LEVEL_WORDS.index(a)] for a in answers])
    assert torch.equal(batch["input_ids"][rows, pos], want)
    assert torch.equal(batch["labels"][rows, pos], want)
    eot = tok.convert_tokens_to_ids(END_OF_TURN.get(family, tok.eos_token))
    for r in range(len(answers)):
        lab = batch["labels"][r]
        real = lab != IGNORE_INDEX
        # Labels cover exactly: level token, "." and the end-of-turn token(s), right after the prompt.
        assert real.nonzero().squeeze(1).tolist() == list(
            range(int(pos[r]), int(pos[r]) + int(real.sum()))
        )
        assert lab[real].tolist()[1] == tok.convert_tokens_to_ids(".") or family == "llava"
        if family in END_OF_TURN:
            assert lab[real].tolist()[-1] == eot
        assert bool(batch["attention_mask"][r, pos[r] : pos[r] + int(real.sum())].all())
    if side == "right":
        assert bool(batch["attention_mask"][:, 0].all())
    else:
        assert bool(batch["attention_mask"][:, -1].all())
    # The invariant scoring relies on: the logits before the level token in the training sequence
    # equal the last-position logits of the scoring prompt.
    score_batch = encode_batch(processor, sample_images, CFG)
    train_inputs = {k: v for k, v in batch.items() if k != "level_positions"}
    with torch.no_grad():
        train_logits = model(**train_inputs).logits[rows, pos - 1][:, ids]
        score_logits = model(**score_batch, logits_to_keep=1).logits[:, -1, ids]
    torch.testing.assert_close(train_logits, score_logits, rtol=1e-4, atol=1e-4)


def test_training_resolves_level_tokens_when_not_given(tiny_vlm, sample_images):
    _, processor = tiny_vlm("idefics3")
    batch = encode_batch(processor, sample_images[:2], CFG, answers=["good", "poor"])
    assert processor.tokenizer.convert_ids_to_tokens(
        batch["input_ids"][[0, 1], batch["level_positions"]].tolist()
    ) == ["Ġgood", "Ġpoor"]


def test_bad_answers_and_lengths(tiny_vlm, sample_images):
    _, processor = tiny_vlm("qwen2_5_vl")
    with pytest.raises(ValueError, match="answer 1 is 'great', not one of the level words"):
        encode_batch(processor, sample_images[:2], CFG, answers=["good", "great"])
    with pytest.raises(ValueError, match="got 1 answers for 2 images"):
        encode_batch(processor, sample_images[:2], CFG, answers=["good"])
    with pytest.raises(ValueError, match="at least one image"):
        encode_batch(processor, [], CFG)
    with pytest.raises(ValueError, match="padding_side"):
        encode_batch(processor, sample_images[:1], CFG, padding_side="middle")


def test_max_length_never_cuts_the_prompt(tiny_vlm, sample_images):
    _, processor = tiny_vlm("qwen2_5_vl")
    imgs = sample_images[:2]
    n = int(encode_batch(processor, imgs, CFG)["attention_mask"].sum(1).max())
    with pytest.raises(
        PromptTooLongError,
        match=r"sample \d: the prompt is \d+ tokens .* over max_length=10; .*image tokens",
    ):
        encode_batch(processor, imgs, CFG, max_length=10)
    # Scoring at exactly the prompt length fits; training needs one more token for the level.
    assert encode_batch(processor, imgs, CFG, max_length=n)["input_ids"].shape[1] == n
    with pytest.raises(PromptTooLongError):
        encode_batch(processor, imgs, CFG, answers=["good", "bad"], max_length=n)
    # Only the answer's tail after the level token may be cut.
    cut = encode_batch(processor, imgs, CFG, answers=["good", "bad"], max_length=n + 1)
    assert cut["input_ids"].shape[1] == n + 1
    kept = (cut["labels"] != IGNORE_INDEX).sum(1).tolist()
    longest = int(cut["level_positions"].argmax())
    assert kept[longest] == 1 and kept[1 - longest] == 3  # the shorter prompt keeps " bad" "." eot


def test_processor_kwargs_reach_the_processor(tiny_vlm, sample_images):
    _, processor = tiny_vlm("qwen2_5_vl")
    small = DeQAConfig(
        processor_kwargs={"size": {"shortest_edge": 28 * 28, "longest_edge": 28 * 28}}
    )
    a = encode_batch(processor, sample_images[:1], CFG)
    b = encode_batch(processor, sample_images[:1], small)
    assert b["input_ids"].shape[1] < a["input_ids"].shape[1]
