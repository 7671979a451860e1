"""The tiny random VLMs: every family builds, reloads offline and really looks at the image."""

import json

import pytest
import torch

from deqa.models.config import DeQAConfig
from deqa.models.prompt import build_prompt_text, encode_batch
from deqa.models.tiny import FAMILIES, REQUIRED_FAMILIES, build_tiny_vlm

EXPECTED_CLASS = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
    "internvl": "InternVLForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
}


def test_required_families_are_listed():
    assert set(REQUIRED_FAMILIES) <= set(FAMILIES)
    assert set(EXPECTED_CLASS) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_builds_reloads_and_is_tiny(family, tiny_vlm_path, tiny_vlm):
    path = tiny_vlm_path(family)
    model, processor = tiny_vlm(family)
    assert type(model).__name__ == EXPECTED_CLASS[family]
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 400_000
    text = model.config.get_text_config()
    assert (
        text.hidden_size,
        text.num_hidden_layers,
        text.num_attention_heads,
        text.num_key_value_heads,
    ) == (64, 2, 4, 2)
    size_mb = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    assert size_mb < 3
    assert json.loads((path / "tiny_vlm.json").read_text())["family"] == family
    # The saved tokenizer knows the level words and the family's image placeholder.
    assert (
        processor.tokenizer.convert_tokens_to_ids(processor.image_token)
        != processor.tokenizer.unk_token_id
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_family_sees_the_image(family, tiny_vlm, sample_images):
    """Different images give different next-token logits (Gemma3's zero projector is re-drawn)."""
    model, processor = tiny_vlm(family)
    cfg = DeQAConfig()
    batch = encode_batch(processor, sample_images[:2], cfg)
    with torch.no_grad():
        logits = model(**batch, logits_to_keep=1).logits
    assert logits.shape == (2, 1, model.config.get_text_config().vocab_size)
    assert torch.isfinite(logits).all()
    assert (logits[0] - logits[1]).abs().max() > 1e-4


def test_reload_gives_identical_logits(tiny_vlm_path, tiny_vlm, sample_images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_vlm_path("qwen2_5_vl")
    model, processor = tiny_vlm("qwen2_5_vl")
    again = AutoModelForImageTextToText.from_pretrained(path).eval()
    proc2 = AutoProcessor.from_pretrained(path)
    cfg = DeQAConfig()
    with torch.no_grad():
        a = model(**encode_batch(processor, sample_images, cfg), logits_to_keep=1).logits
        b = again(**encode_batch(proc2, sample_images, cfg), logits_to_keep=1).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_seed_and_initializer_range(tmp_path):
    a = build_tiny_vlm("llava", tmp_path / "a", seed=3, text_initializer_range=0.3)
    b = build_tiny_vlm("llava", tmp_path / "b", seed=3, text_initializer_range=0.3)
    c = build_tiny_vlm("llava", tmp_path / "c", seed=4, text_initializer_range=0.3)
    from safetensors.torch import load_file

    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    head = next(k for k in wa if k.endswith("lm_head.weight"))
    assert torch.equal(wa[head], wb[head]) and not torch.equal(wa[head], wc[head])
    assert wa[head].std().item() == pytest.approx(0.3, rel=0.1)


def test_chat_template_continues_the_assistant_turn(tiny_vlm):
    _, processor = tiny_vlm("qwen2_5_vl")
    text = build_prompt_text(processor, DeQAConfig())
    assert text.endswith("<|im_start|>assistant\nThe quality of the image is")
    assert "<|im_end|>" not in text.split("<|im_start|>assistant")[-1]


def test_unknown_family_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny VLM family 'blip'.*qwen2_5_vl"):
        build_tiny_vlm("blip", tmp_path)
