"""Tiny randomly initialised VLMs of the real transformers families, built offline in a second.

Tests, benchmarks and users debugging a pipeline need a model that has the *real* architecture,
processor and chat-template mechanics of a family (Qwen2.5-VL's dynamic image-token count,
LLaVA's CLIP tower, Idefics3's nested image lists, ...) without downloading 15 GB of weights.
:func:`build_tiny_vlm` builds one from the family's own config classes (text hidden 64, 2 layers,
4 heads / 2 KV heads; vision width 32), trains a small BPE tokenizer that holds the level words,
prompt words, punctuation and the family's special tokens, writes a small chat template that
behaves like the family's real one (same role markers and image placeholders; works with
``continue_final_message``), and saves everything with ``save_pretrained`` so that
``AutoModelForImageTextToText.from_pretrained`` + ``AutoProcessor.from_pretrained`` reload it
offline::

    from deqa.models.tiny import build_tiny_vlm
    path = build_tiny_vlm("qwen2_5_vl", "/tmp/tiny-qwen")
    # deqa-score --model /tmp/tiny-qwen image.jpg

Two tokenizer styles mirror the pitfalls of real vocabularies: ``bytelevel`` (GPT-2/Qwen/Llama-3:
``" good"`` is the token ``"Ġgood"``, no BOS added by the tokenizer) and ``metaspace``
(SentencePiece/Llama-2/Gemma: ``"▁good"``, BOS added by the tokenizer). Words outside the
training corpus split into several sub-word tokens, exactly like rare words in a real vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..levels import LEVEL_WORDS

__all__ = [
    "FAMILIES",
    "REQUIRED_FAMILIES",
    "build_tiny_vlm",
    "build_tiny_tokenizer",
    "TINY_TEXT",
    "TINY_VISION",
]

# Families deqa is tested on. The first three must always work; the rest are built "as far as
# they work" in the installed transformers (see README, "Supported model families").
REQUIRED_FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "llava", "idefics3")
FAMILIES: tuple[str, ...] = REQUIRED_FAMILIES + (
    "qwen2_vl",
    "qwen3_vl",
    "internvl",
    "smolvlm",
    "gemma3",
)

# Shared tiny sizes. 64-wide text layers keep every quantisable Linear input a multiple of 64,
# which bitsandbytes needs for 4-bit on CPU.
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)

# Words every tiny tokenizer knows as whole tokens (with and without a leading space, lower and
# capitalised): the level words, the default prompt, chat-template role words, and a few
# quality synonyms so that level-token suggestions have something to find.
_BASE_WORDS = (
    *LEVEL_WORDS,
    *"how would you rate the quality of this image is".split(),
    *"user assistant system model a an are helpful picture photo rating".split(),
    *"great high low average terrible awful perfect fine".split(),
)
_PUNCTUATION = (".", ",", "?", "!", ":", ";", "\n", "'", '"')


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------
def build_tiny_tokenizer(
    style: str,
    *,
    special_tokens: Sequence[str],
    bos_token: str | None,
    eos_token: str,
    pad_token: str,
    unk_token: str | None = None,
    add_bos: bool = False,
    extra_special_tokens: dict[str, str] | None = None,
    chat_template: str | None = None,
    words: Sequence[str] = (),
    vocab_size: int = 800,
):
    """Train a small BPE tokenizer (``style`` = "bytelevel" or "metaspace") on a corpus of words.

    The level words, prompt words and chat role words become single tokens in their bare,
    leading-space and capitalised forms, extra ``words`` in their bare and leading-space forms
    as given; anything else splits into sub-word pieces.
    ``special_tokens`` are added as unsplittable special tokens; ``extra_special_tokens`` names
    some of them as attributes (``tokenizer.image_token`` etc.), which the processors read.
    Returns a ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # Base words in lower and capitalised form; extra ``words`` exactly as given, so a test can
    # build a vocabulary where "Superb" is one token but "superb" is not.
    forms = [f for w in _BASE_WORDS for f in (w, w.capitalize())] + list(words)
    corpus: list[str] = []
    for form in dict.fromkeys(forms):
        corpus += [form, " " + form] * 8
    corpus += [p * 2 for p in _PUNCTUATION] * 8
    # Byte-level models start from all 256 bytes; metaspace ones from printable ASCII so that any
    # English word still tokenises (into characters) instead of becoming <unk>.
    if style == "bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif style == "metaspace":
        if unk_token is None:
            raise ValueError("a metaspace tokenizer needs an unk_token")
        tok = Tokenizer(models.BPE(unk_token=unk_token))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
                pre_tokenizers.Punctuation(),
            ]
        )
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = [chr(c) for c in range(33, 127)] + ["▁", "\n"]
    else:
        raise ValueError(f"unknown tokenizer style {style!r}; use 'bytelevel' or 'metaspace'")
    specials = list(
        dict.fromkeys(
            [t for t in (unk_token, bos_token, eos_token, pad_token) if t] + list(special_tokens)
        )
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    if add_bos:
        if bos_token is None:
            raise ValueError("add_bos=True needs a bos_token")
        bos_id = tok.token_to_id(bos_token)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A {bos_token} $B",
            special_tokens=[(bos_token, bos_id)],
        )
    elif style == "bytelevel":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    kwargs = dict(eos_token=eos_token, pad_token=pad_token)
    if bos_token:
        kwargs["bos_token"] = bos_token
    if unk_token:
        kwargs["unk_token"] = unk_token
    if extra_special_tokens:
        kwargs["extra_special_tokens"] = dict(extra_special_tokens)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=chat_template, **kwargs)
    return fast


# --------------------------------------------------------------------------------------------
# chat templates: small, written for deqa, each following its family's real role markers
# --------------------------------------------------------------------------------------------
def _content_loop(image: str, *, images_first: bool = False) -> str:
    """Jinja that renders a message's content: text items verbatim, image items as ``image``."""
    text = "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    if images_first:
        return (
            text
            + "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
            + image
            + "{% endif %}{% endfor %}"
            + "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
            + "{% endif %}"
        )
    return (
        text
        + "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
        + image
        + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    )


def _chatml_template(image: str, default_system: str | None) -> str:
    # Qwen-style ChatML: <|im_start|>role\n ... <|im_end|>\n ; Qwen2/2.5 add a default system turn.
    system = ""
    if default_system:
        system = (
            "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
            + default_system
            + "<|im_end|>\n{% endif %}"
        )
    return (
        system
        + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        + _content_loop(image)
        + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


_LLAVA_TEMPLATE = (
    # llava-1.5-hf: "USER: <image>\n<question> ASSISTANT: <answer></s>"; the tokenizer adds <s>.
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }} "
    "{% elif message['role'] == 'user' %}USER: "
    + _content_loop("<image>\n", images_first=True)
    + " "
    "{% else %}ASSISTANT: " + _content_loop("") + "{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _idefics_template(begin: str) -> str:
    # Idefics3 / SmolVLM: "<bos>User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>\n"
    return (
        begin + "{% for message in messages %}{{ message['role'] | capitalize }}"
        "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
        + _content_loop("<image>")
        + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    )


_GEMMA3_TEMPLATE = (
    # Gemma 3: "<bos><start_of_turn>user\n<start_of_image>question<end_of_turn>\n<start_of_turn>model\n".
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    # trim_blocks eats a newline right after a block tag, hence the explicit {{ '\\n' }}.
    "{% if message['role'] == 'assistant' %}model{% else %}{{ message['role'] }}{% endif %}{{ '\\n' }}"
    + _content_loop("<start_of_image>")
    + "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


# --------------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------------
@dataclass
class _Family:
    tokenizer: dict
    build: Callable  # (tokenizer, text_initializer_range) -> (config, processor)
    reinit: tuple[str, ...] = field(default_factory=tuple)  # parameters to re-draw after init


_QWEN_SPECIALS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


def _qwen_tokenizer(default_system: str | None) -> dict:
    return dict(
        style="bytelevel",
        special_tokens=["<|im_start|>", "<|im_end|>", *_QWEN_SPECIALS.values()],
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=_QWEN_SPECIALS,
        chat_template=_chatml_template(
            "<|vision_start|><|image_pad|><|vision_end|>", default_system
        ),
    )


def _qwen_ids(tok) -> dict:
    return dict(
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )


def _text(tok, init_range: float, **extra) -> dict:
    return dict(
        TINY_TEXT,
        vocab_size=len(tok),
        max_position_embeddings=4096,
        initializer_range=init_range,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        **extra,
    )


def _build_qwen2_vl(tok, init_range, *, v25: bool):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLConfig, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    # mrope_section splits head_dim/2 = 8 rotary pairs over (time, height, width).
    text = _text(
        tok,
        init_range,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
    )
    if v25:
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        )
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
        proc_cls = Qwen2_5_VLProcessor
    else:
        vision = dict(
            depth=2,
            embed_dim=32,
            hidden_size=64,
            mlp_ratio=2,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
        proc_cls = Qwen2VLProcessor
    # Sizes are pixel counts: every image is resized to ~56x56 px keeping its aspect ratio, so the
    # number of image tokens still depends on the image's shape, as in the real model.
    size = {"shortest_edge": 56 * 56, "longest_edge": 56 * 56}
    processor = proc_cls(
        image_processor=Qwen2VLImageProcessor(
            size=size, patch_size=14, merge_size=2, temporal_patch_size=2
        ),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(
            size=size, patch_size=14, merge_size=2, temporal_patch_size=2
        ),
        chat_template=tok.chat_template,
    )
    return config, processor


def _build_qwen3_vl(tok, init_range):
    from transformers import Qwen3VLConfig, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    text = _text(
        tok,
        init_range,
        head_dim=16,
        rope_parameters={
            "rope_type": "default",
            "mrope_section": [2, 3, 3],
            "rope_theta": 5e6,
            "mrope_interleaved": True,
        },
    )
    text.pop("bos_token_id")
    text.pop("eos_token_id")
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=16,
        deepstack_visual_indexes=[1],
    )
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    size = {"shortest_edge": 64 * 64, "longest_edge": 64 * 64}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size=size,
            patch_size=16,
            merge_size=2,
            temporal_patch_size=2,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        tokenizer=tok,
        video_processor=Qwen3VLVideoProcessor(
            size=size, patch_size=16, merge_size=2, temporal_patch_size=2
        ),
        chat_template=tok.chat_template,
    )
    return config, processor


def _build_llava(tok, init_range):
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaProcessor

    image_size, patch = 56, 14
    n_tokens = (image_size // patch) ** 2  # "default" strategy drops CLIP's CLS token
    vision = dict(
        TINY_VISION,
        model_type="clip_vision_model",
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    text = dict(_text(tok, init_range), model_type="llama")
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=n_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        ),
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=tok.chat_template,
    )
    return config, processor


_ROW_COL = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]


def _build_idefics3(tok, init_range, *, smol: bool):
    from transformers import Idefics3Config, Idefics3Processor, SmolVLMConfig, SmolVLMProcessor
    from transformers.models.idefics3.image_processing_idefics3 import Idefics3ImageProcessor
    from transformers.models.smolvlm.image_processing_smolvlm import SmolVLMImageProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    image_size, patch, scale = 32, 8, 2
    seq_len = (image_size // patch) ** 2 // scale**2
    vision = dict(TINY_VISION, image_size=image_size, patch_size=patch)
    text = dict(_text(tok, init_range), model_type="llama")
    cfg_cls = SmolVLMConfig if smol else Idefics3Config
    config = cfg_cls(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
    )
    # No image splitting: one global view per image, `seq_len` tokens each.
    ip_kwargs = dict(
        do_image_splitting=False,
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
    )
    if smol:
        processor = SmolVLMProcessor(
            image_processor=SmolVLMImageProcessor(**ip_kwargs),
            tokenizer=tok,
            video_processor=SmolVLMVideoProcessor(
                size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}
            ),
            image_seq_len=seq_len,
            chat_template=tok.chat_template,
        )
    else:
        processor = Idefics3Processor(
            image_processor=Idefics3ImageProcessor(**ip_kwargs),
            tokenizer=tok,
            image_seq_len=seq_len,
            chat_template=tok.chat_template,
        )
    return config, processor


def _build_internvl(tok, init_range):
    from transformers import InternVLConfig, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_got_ocr2 import GotOcr2ImageProcessor
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    image_size, patch = 56, 14
    seq_len = int((image_size // patch) ** 2 * 0.5**2)
    vision = dict(TINY_VISION, image_size=[image_size, image_size], patch_size=[patch, patch])
    text = dict(_text(tok, init_range), model_type="qwen2")
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=seq_len,
        downsample_ratio=0.5,
    )
    processor = InternVLProcessor(
        # One 56x56 view per image instead of up to 12 tiles: InternVLProcessor forces
        # crop_to_patches=True at call time, so max_patches=1 is what turns tiling off.
        image_processor=GotOcr2ImageProcessor(
            size={"height": image_size, "width": image_size}, crop_to_patches=False, max_patches=1
        ),
        tokenizer=tok,
        video_processor=InternVLVideoProcessor(size={"height": image_size, "width": image_size}),
        image_seq_length=seq_len,
        chat_template=tok.chat_template,
    )
    return config, processor


def _build_gemma3(tok, init_range):
    from transformers import Gemma3Config, Gemma3Processor
    from transformers.models.gemma3.image_processing_gemma3 import Gemma3ImageProcessor

    image_size, patch, mm_tokens = 32, 8, 4
    text = _text(tok, init_range, head_dim=16, query_pre_attn_scalar=16, sliding_window=64)
    vision = dict(TINY_VISION, image_size=image_size, patch_size=patch, vision_use_head=False)
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=mm_tokens,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tok,
        image_seq_length=mm_tokens,
        chat_template=tok.chat_template,
    )
    return config, processor


_LLAMA_SPM = dict(
    style="metaspace",
    bos_token="<s>",
    eos_token="</s>",
    pad_token="<pad>",
    unk_token="<unk>",
    add_bos=True,
)

_FAMILY_SPECS: dict[str, _Family] = {
    "qwen2_5_vl": _Family(
        _qwen_tokenizer("You are a helpful assistant."),
        lambda t, r: _build_qwen2_vl(t, r, v25=True),
    ),
    "qwen2_vl": _Family(
        _qwen_tokenizer("You are a helpful assistant."),
        lambda t, r: _build_qwen2_vl(t, r, v25=False),
    ),
    "qwen3_vl": _Family(_qwen_tokenizer(None), _build_qwen3_vl),
    "llava": _Family(
        dict(
            _LLAMA_SPM,
            special_tokens=["<image>"],
            extra_special_tokens={"image_token": "<image>"},
            chat_template=_LLAVA_TEMPLATE,
        ),
        _build_llava,
    ),
    "idefics3": _Family(
        dict(
            style="bytelevel",
            bos_token="<|begin_of_text|>",
            eos_token="<end_of_utterance>",
            pad_token="<|end_of_text|>",
            special_tokens=["<fake_token_around_image>", "<image>", "<global-img>", *_ROW_COL],
            extra_special_tokens={
                "image_token": "<image>",
                "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>",
                "end_of_utterance_token": "<end_of_utterance>",
            },
            chat_template=_idefics_template("<|begin_of_text|>"),
        ),
        lambda t, r: _build_idefics3(t, r, smol=False),
    ),
    "smolvlm": _Family(
        dict(
            style="bytelevel",
            bos_token="<|im_start|>",
            eos_token="<end_of_utterance>",
            pad_token="<|im_end|>",
            special_tokens=[
                "<fake_token_around_image>",
                "<image>",
                "<global-img>",
                "<video>",
                *_ROW_COL,
            ],
            extra_special_tokens={
                "image_token": "<image>",
                "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>",
                "end_of_utterance_token": "<end_of_utterance>",
                "video_token": "<video>",
            },
            chat_template=_idefics_template("<|im_start|>"),
        ),
        lambda t, r: _build_idefics3(t, r, smol=True),
    ),
    "internvl": _Family(
        dict(
            style="bytelevel",
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            special_tokens=[
                "<|im_start|>",
                "<|im_end|>",
                "<img>",
                "</img>",
                "<IMG_CONTEXT>",
                "<video>",
            ],
            extra_special_tokens={
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            },
            chat_template=_chatml_template("<IMG_CONTEXT>\n", None),
        ),
        _build_internvl,
    ),
    "gemma3": _Family(
        dict(
            style="metaspace",
            bos_token="<bos>",
            eos_token="<eos>",
            pad_token="<pad>",
            unk_token="<unk>",
            add_bos=True,
            special_tokens=[
                "<start_of_turn>",
                "<end_of_turn>",
                "<start_of_image>",
                "<end_of_image>",
                "<image_soft_token>",
            ],
            extra_special_tokens={
                "image_token": "<image_soft_token>",
                "boi_token": "<start_of_image>",
                "eoi_token": "<end_of_image>",
            },
            chat_template=_GEMMA3_TEMPLATE,
        ),
        _build_gemma3,
        # Gemma3 initialises its projector to zero, which would make a random model blind.
        reinit=("model.multi_modal_projector.mm_input_projection_weight",),
    ),
}


def build_tiny_vlm(
    family: str,
    out_dir: str | Path,
    *,
    text_initializer_range: float = 0.02,
    seed: int = 0,
    words: Sequence[str] = (),
    vocab_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Build, save and return the folder of a tiny random ``family`` VLM with its processor.

    Args:
        family: one of :data:`FAMILIES`.
        out_dir: folder to write (created; existing files are overwritten).
        text_initializer_range: std of the language model's random weights. The default 0.02
            gives nearly uniform level probabilities; ~0.3 lets a LoRA on a frozen head learn
            (the training demo and tests use 0.1 on the tiny Qwen2.5-VL).
        seed: torch seed for the weights (the tokenizer is deterministic).
        words: extra words the tokenizer should know as single tokens (e.g. custom level words).
        vocab_size: pad the embedding and LM head to this many rows (e.g. 151936, Qwen's), so
            that benchmarks pay a real model's LM-head cost; the tokenizer is unchanged.
        dtype: weight dtype to save.

    The folder reloads offline with ``AutoModelForImageTextToText.from_pretrained`` and
    ``AutoProcessor.from_pretrained``. It also holds ``tiny_vlm.json`` recording how it was built.
    """
    from transformers import AutoModelForImageTextToText

    if family not in _FAMILY_SPECS:
        raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {', '.join(FAMILIES)}")
    spec = _FAMILY_SPECS[family]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer(**spec.tokenizer, words=words)
    config, processor = spec.build(tok, text_initializer_range)
    if vocab_size is not None:
        if vocab_size < len(tok):
            raise ValueError(
                f"vocab_size={vocab_size} is smaller than the tokenizer ({len(tok)} tokens)"
            )
        config.get_text_config().vocab_size = vocab_size
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in spec.reinit:
            param = model.get_parameter(name)
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    model = model.to(dtype).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {
        "family": family,
        "text_initializer_range": text_initializer_range,
        "seed": seed,
        "vocab_size": vocab_size,
        "words": list(words),
    }
    (out / "tiny_vlm.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m deqa.models.tiny FAMILY OUT_DIR``: write a tiny random VLM to try deqa on."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m deqa.models.tiny", description=main.__doc__)
    p.add_argument("family", choices=FAMILIES)
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-initializer-range", type=float, default=0.02)
    p.add_argument("--vocab-size", type=int, default=None)
    args = p.parse_args(argv)
    path = build_tiny_vlm(
        args.family,
        args.out_dir,
        seed=args.seed,
        text_initializer_range=args.text_initializer_range,
        vocab_size=args.vocab_size,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
