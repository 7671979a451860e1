"""VLMScorer: the DeQA score read from one batched forward, on tiny models of every family."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from deqa.levels import LEVEL_WORDS
from deqa.models.config import DeQAConfig
from deqa.models.level_tokens import LevelTokenError
from deqa.models.loading import load_vlm, non_language_modules
from deqa.models.prompt import encode_batch
from deqa.models.tiny import FAMILIES
from deqa.results import ScoreResult
from deqa.scoring import VLMScorer, load_vlm_scorer


def _scorer(tiny_vlm, family, **kw):
    model, processor = tiny_vlm(family)
    return VLMScorer(model, processor, DeQAConfig(), model_id=f"tiny-{family}", **kw)


def _scores(results):
    return np.array([r.score for r in results])


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_probs_and_fields(family, tiny_vlm, sample_images):
    scorer = _scorer(tiny_vlm, family)
    results = scorer.score(sample_images, batch_size=5)
    assert len(results) == len(sample_images)
    for r in results:
        assert isinstance(r, ScoreResult) and r.model == f"tiny-{family}"
        assert list(r.probs) == list(LEVEL_WORDS)
        p = np.array(list(r.probs.values()))
        assert (p > 0).all() and p.sum() == pytest.approx(1.0, abs=1e-6)
        assert 1.0 <= r.score <= 5.0
        assert r.score == pytest.approx(float(p @ np.arange(1, 6)), abs=1e-9)
        assert r.score_0_1 == pytest.approx((r.score - 1) / 4)
        assert r.std == pytest.approx(
            float(np.sqrt(p @ (np.arange(1, 6) - r.score) ** 2)), abs=1e-6
        )
        assert r.level == LEVEL_WORDS[int(np.argmax(p))]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_equals_one_by_one(family, tiny_vlm, sample_images):
    scorer = _scorer(tiny_vlm, family)
    batched = _scores(scorer.score(sample_images, batch_size=5))
    single = _scores(scorer.score(sample_images, batch_size=1))
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_probs_match_a_full_forward_by_hand(tiny_vlm, sample_images):
    """The logits_to_keep=1 path reads the same numbers as the full [B, L, V] logits would."""
    model, processor = tiny_vlm("qwen2_5_vl")
    scorer = _scorer(tiny_vlm, "qwen2_5_vl")
    batch = encode_batch(processor, sample_images[:3], DeQAConfig())
    with torch.no_grad():
        full = model(**batch).logits  # [B, L, V]: fine for a tiny model, what the scorer avoids
    want = torch.softmax(full[:, -1, scorer.level_token_ids], dim=-1)
    torch.testing.assert_close(scorer.level_probs(batch), want, rtol=1e-5, atol=1e-6)


def test_fallback_without_logits_to_keep_gives_the_same_probs(tiny_vlm, sample_images):
    scorer = _scorer(tiny_vlm, "llava")
    batch = encode_batch(scorer.processor, sample_images[:3], DeQAConfig())
    a = scorer.level_probs(batch)
    scorer._logits_to_keep = False
    torch.testing.assert_close(scorer.level_probs(batch), a, rtol=1e-5, atol=1e-6)


def test_group_by_size_workers_and_order(tiny_vlm, sample_images, tmp_path):
    paths = []
    for i, img in enumerate(sample_images * 2):
        p = tmp_path / f"{i}.png"
        img.save(p)
        paths.append(str(p))
    scorer = _scorer(tiny_vlm, "qwen2_5_vl")
    assert scorer.group_by_size  # Qwen2.5-VL: token count follows the image size
    plan = scorer.batch_order(paths, 3)
    assert sorted(i for b in plan for i in b) == list(range(len(paths)))
    areas = [Image.open(paths[i]).size for b in plan for i in b]
    assert [w * h for w, h in areas] == sorted(w * h for w, h in areas)
    grouped = list(scorer.iter_score(paths, batch_size=3, num_workers=2))
    assert [r.input for r in grouped] == paths
    scorer.group_by_size = False
    plain = list(scorer.iter_score(paths, batch_size=3))
    np.testing.assert_allclose(_scores(grouped), _scores(plain), atol=1e-5)
    assert not _scorer(tiny_vlm, "llava").group_by_size


def test_collate_is_picklable(tiny_vlm, sample_images):
    collate = pickle.loads(pickle.dumps(_scorer(tiny_vlm, "idefics3").make_collate()))
    batch = collate(sample_images[:2])
    assert batch["input_ids"].shape[0] == 2 and "pixel_values" in batch


def test_a_bad_image_does_not_sink_its_batch(tiny_vlm):
    scorer = _scorer(tiny_vlm, "qwen2_5_vl")
    imgs = [
        Image.new("RGB", (50, 50), "red"),
        Image.new("RGB", (1000, 3)),
        Image.new("RGB", (60, 40), "blue"),
    ]
    out = list(scorer.iter_score(imgs, batch_size=3))
    assert [type(r).__name__ for r in out] == ["ScoreResult", "ScoreFailure", "ScoreResult"]
    assert "preprocessing failed" in out[1].error and "aspect ratio" in out[1].error


def test_level_token_error_surfaces_at_load(tiny_vlm_path, tmp_path):
    import shutil

    folder = tmp_path / "custom"
    shutil.copytree(tiny_vlm_path("qwen2_5_vl"), folder)
    DeQAConfig(level_words=("bad", "poor", "fair", "good", "superb")).save(folder)
    with pytest.raises(LevelTokenError, match="'superb' splits into"):
        load_vlm_scorer(str(folder))


# -- loading: folders, deqa_config.json, adapters, quantisation ---------------------------------
def test_plain_base_model_gets_default_config(tiny_vlm_path):
    vlm = load_vlm(tiny_vlm_path("llava"))
    assert vlm.config == DeQAConfig.for_base_model(str(tiny_vlm_path("llava")))
    assert vlm.device.type == "cpu" and vlm.dtype == torch.float32
    assert not vlm.model.training


def test_checkpoint_config_changes_the_prompt(tiny_vlm_path, tmp_path, sample_images):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_vlm_path("qwen2_5_vl"), folder)
    DeQAConfig(question="Rate this picture.", base_model="x").save(folder)
    scorer = load_vlm_scorer(str(folder))
    assert "Rate this picture." in scorer.prompt_text
    base = load_vlm_scorer(str(tiny_vlm_path("qwen2_5_vl")))
    assert not np.allclose(_scores(scorer.score(sample_images)), _scores(base.score(sample_images)))


@pytest.fixture(scope="module")
def adapter_checkpoint(tiny_vlm_path, tmp_path_factory):
    """A deqa-style LoRA checkpoint: adapter + deqa_config.json naming the base + processor."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from deqa.models.quiet import peft_wrap_quietly

    base = tiny_vlm_path("qwen2_5_vl")
    model = AutoModelForImageTextToText.from_pretrained(base)  # a fresh copy: peft edits in place
    torch.manual_seed(0)
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
        init_lora_weights=False,  # random B: the adapter really changes the output
    )
    folder = tmp_path_factory.mktemp("lora-ckpt")
    with peft_wrap_quietly():  # as deqa's own calls are (deqa/models/quiet.py)
        get_peft_model(model, lora).save_pretrained(folder)
    DeQAConfig(base_model=str(base), label_method="deqa").save(folder)
    AutoProcessor.from_pretrained(base).save_pretrained(folder)
    return base, folder


def test_adapter_changes_scores_and_loads_three_ways(adapter_checkpoint, sample_images):
    from deqa.fileio import weights_fingerprint

    base, folder = adapter_checkpoint
    plain = _scores(load_vlm_scorer(str(base)).score(sample_images))
    direct = load_vlm_scorer(str(folder))  # --model <checkpoint>: base from deqa_config.json
    # The folder and its weights' fingerprint: a checkpoint retrained in place is another model.
    assert direct.model_id.startswith(f"{folder}@{weights_fingerprint(folder)}#float32-") and len(weights_fingerprint(folder)) == 12
    tuned = _scores(direct.score(sample_images))
    assert np.abs(tuned - plain).max() > 1e-3
    explicit = _scores(load_vlm_scorer(str(base), adapter=str(folder)).score(sample_images))
    np.testing.assert_allclose(explicit, tuned, atol=1e-6)
    unmerged = load_vlm(str(folder), merge_adapter=False)
    assert type(unmerged.model).__name__ == "PeftModel"
    scorer = VLMScorer(unmerged.model, unmerged.processor, unmerged.config, model_id="u")
    np.testing.assert_allclose(_scores(scorer.score(sample_images)), tuned, atol=1e-5)


def test_loading_errors(adapter_checkpoint, tiny_vlm_path, tmp_path):
    base, folder = adapter_checkpoint
    with pytest.raises(ValueError, match="no adapter_config.json there"):
        load_vlm(str(base), adapter=str(tmp_path))
    with pytest.raises(ValueError, match="is itself an adapter checkpoint"):
        load_vlm(str(folder), adapter=str(folder))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        load_vlm(str(f))
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="names its base model"):
        load_vlm(str(orphan))
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        load_vlm(str(base), dtype="fp8")


@pytest.mark.parametrize("bits, layer", [(4, "Linear4bit"), (8, "Linear8bitLt")])
def test_quantisation_touches_only_the_language_model(bits, layer, tiny_vlm_path, sample_images):
    flag = {4: "load_in_4bit", 8: "load_in_8bit"}[bits]
    scorer = load_vlm_scorer(str(tiny_vlm_path("qwen2_5_vl")), **{flag: True})
    kinds = {n: type(m).__name__ for n, m in scorer.model.named_modules()}
    q = [n for n, k in kinds.items() if k == layer]
    assert q and all(".language_model." in n for n in q)
    assert kinds["lm_head"] == "Linear" and not any(n.startswith("model.visual") for n in q)
    results = scorer.score(sample_images[:2])
    assert all(1 <= r.score <= 5 for r in results)


def test_non_language_modules_are_full_paths(tiny_vlm):
    assert sorted(non_language_modules(tiny_vlm("qwen2_5_vl")[0])) == ["lm_head", "model.visual"]
    assert sorted(non_language_modules(tiny_vlm("llava")[0])) == [
        "lm_head",
        "model.multi_modal_projector",
        "model.vision_tower",
    ]


@pytest.mark.parametrize("kwargs, message", [({"max_length": 0}, "max_length must be None or an int >= 1, got 0"),
                                              ({"batch_size": 0}, "batch_size must be an int >= 1, got 0")])
def test_bad_sizes_are_refused_before_the_model_loads(tmp_path, kwargs, message):
    # The folder does not exist: an error about it would mean loading had been tried first.
    with pytest.raises(ValueError, match=message):
        load_vlm_scorer(str(tmp_path / "no-model"), **kwargs)


def test_an_adapter_on_another_family_or_a_missing_adapter_is_refused_at_load(adapter_checkpoint, tiny_vlm_path, tmp_path):
    base, folder = adapter_checkpoint  # trained on the tiny Qwen2.5-VL
    with pytest.raises(ValueError, match=r"was trained on a 'qwen2_5_vl' model .*not on a 'llava' one"):
        load_vlm(str(tiny_vlm_path("llava")), adapter=str(folder))
    with pytest.raises(FileNotFoundError, match=r"--adapter .*nope: no such folder"):
        load_vlm(str(base), adapter=str(tmp_path / "nope"))
