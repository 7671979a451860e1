"""Frozen encoders, the MLP head, the embedding cache and the encoder-head scorer."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from deqa.baselines import load_baseline
from deqa.baselines.encoder_head import (
    EmbeddingCache,
    EncoderHeadScorer,
    HeadTrainConfig,
    QualityHead,
    image_hash,
    read_score_table,
    save_encoder_head,
    train_head,
)
from deqa.baselines.encoders import EncoderSpec, build_encoder
from deqa.baselines.thresholds import ThresholdPolicy


def test_head_is_exactly_the_specified_mlp():
    head = QualityHead(48)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert [(m.in_features, m.out_features) for m in head.net if isinstance(m, torch.nn.Linear)] == [(48, 256), (256, 64), (64, 1)]
    assert head.net[2].p == 0.1
    out = head.eval()(torch.randn(5, 48))
    assert out.shape == (5,) and ((out > 0) & (out < 1)).all()


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    path = tmp_path_factory.mktemp("dinov2")
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    Dinov2Model(cfg).save_pretrained(path)
    return str(path)


def _tiny_clip(path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    cfg = CLIPConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 100},
        vision_config={"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return 24


def _tiny_siglip(path):
    from transformers import SiglipConfig, SiglipModel

    cfg = SiglipConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 100},
        vision_config={"hidden_size": 20, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 40,
                       "image_size": 32, "patch_size": 8},
    )
    SiglipModel(cfg).save_pretrained(path)
    return 20


def _images(n, seed=0, size=(40, 30)):
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)) for _ in range(n)]


def _saved_images(folder, n, seed, prefix=""):
    """``_images(n, seed)`` saved as ``folder/<prefix><i>.png``; their paths."""
    paths = [folder / f"{prefix}{i}.png" for i in range(n)]
    for path, img in zip(paths, _images(n, seed=seed), strict=True):
        img.save(path)
    return paths


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_hf_encoders_from_tiny_random_checkpoints(tmp_path, family):
    dim = (_tiny_clip if family == "clip" else _tiny_siglip)(tmp_path)
    enc = build_encoder(EncoderSpec(name="hf", path=str(tmp_path)))
    assert enc.dim == dim and enc.preprocess.crop == 32
    if family == "clip":  # the saved processor's resize and statistics are used
        assert enc.preprocess.resize == 36 and enc.preprocess.mean[0] == pytest.approx(0.48145466)
    emb = enc.embed(enc.preprocess.collate(_images(3)))
    assert emb.shape == (3, dim) and torch.isfinite(emb).all()
    assert not any(p.requires_grad for p in enc.parameters())


def test_dinov2_frozen_and_always_eval(tiny_dinov2):
    enc = build_encoder(EncoderSpec(name="hf", path=tiny_dinov2))
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    emb = enc.embed(enc.preprocess.collate(_images(2)))
    assert emb.shape == (2, 32)


def test_efficientnet_lite0_has_real_imagenet_weights():
    from skimage import data

    enc = build_encoder(EncoderSpec(name="efficientnet-lite0"))
    x = enc.preprocess.collate([Image.fromarray(data.chelsea())])
    with torch.no_grad():
        top = enc.body(x).softmax(-1).argmax().item()
    assert 281 <= top <= 285  # ImageNet's domestic-cat classes: the packaged weights are real
    assert enc.embed(x).shape == (1, 1280)


def test_resnet50_needs_explicit_weights(tmp_path):
    with pytest.raises(ValueError, match="local weights file"):
        EncoderSpec(name="resnet50")
    enc = build_encoder(EncoderSpec(name="resnet50", allow_random=True))
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in enc.body.state_dict().items()}
    import torchvision

    full = torchvision.models.resnet50(weights=None).state_dict()
    full.update(state)
    save_file({k: v.contiguous() for k, v in full.items()}, str(tmp_path / "r50.safetensors"))
    again = build_encoder(EncoderSpec(name="resnet50", path=str(tmp_path / "r50.safetensors")))
    x = again.preprocess.collate(_images(1, size=(64, 64)))
    assert torch.allclose(enc.embed(x), again.embed(x)) and again.dim == 2048


def test_encoder_spec_errors():
    with pytest.raises(ValueError, match="unknown"):
        EncoderSpec(name="vgg16")
    with pytest.raises(ValueError, match="hub id"):
        EncoderSpec(name="hf")
    with pytest.raises(ValueError, match="unknown key"):
        EncoderSpec.from_dict({"name": "hf", "path": "x", "revision": "main"})


def test_cache_hit_on_second_pass_and_keyed_by_content(tiny_dinov2, tmp_path):
    enc = build_encoder(EncoderSpec(name="hf", path=tiny_dinov2))
    paths = _saved_images(tmp_path, 4, seed=1)
    # A byte-identical copy under another name is the same cache entry.
    (tmp_path / "copy.png").write_bytes(paths[0].read_bytes())
    cache = EmbeddingCache(tmp_path / "cache", enc)
    first = cache.embed(paths)
    assert (cache.hits, cache.misses) == (0, 4)
    again = EmbeddingCache(tmp_path / "cache", enc)
    second = again.embed(paths + [tmp_path / "copy.png"])
    assert (again.hits, again.misses) == (5, 0)
    np.testing.assert_array_equal(first, second[:4])
    np.testing.assert_array_equal(second[0], second[4])
    assert image_hash(paths[0]) == image_hash(tmp_path / "copy.png") != image_hash(paths[1])
    # Another preprocessing is another cache.
    from dataclasses import replace

    enc.preprocess = replace(enc.preprocess, resize=40)
    assert EmbeddingCache(tmp_path / "cache", enc).dir != cache.dir


def test_embed_records_unreadable_inputs_when_asked(tiny_dinov2, tmp_path):
    from deqa.imageio import ImageLoadError

    enc = build_encoder(EncoderSpec(name="hf", path=tiny_dinov2))
    good = _saved_images(tmp_path, 2, seed=4, prefix="g")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    sources = [good[0], tmp_path / "gone.png", tmp_path / "bad.png", good[1]]
    cache = EmbeddingCache(tmp_path / "cache", enc)
    with pytest.raises(ImageLoadError):  # without a failures list, the first bad input raises
        cache.embed([good[0], tmp_path / "bad.png"])
    failures = []
    out = EmbeddingCache(tmp_path / "cache2", enc).embed(sources, batch_size=4, failures=failures)
    assert [(i, r) for i, r in failures if i == 1] == [(1, "no such file")] and [i for i, _ in failures] == [1, 2]
    assert not out[1].any() and not out[2].any() and out[0].any() and out[3].any()
    # The good ones are what a clean run computes.
    np.testing.assert_array_equal(out[[0, 3]], EmbeddingCache(tmp_path / "cache3", enc).embed([good[0], good[1]]))


def test_head_trains_on_cached_embeddings_and_round_trips(tiny_dinov2, tmp_path):
    enc = build_encoder(EncoderSpec(name="hf", path=tiny_dinov2))
    rng = np.random.default_rng(0)
    # Learnable targets: a smooth function of the embedding.
    emb = rng.normal(size=(200, 32)).astype(np.float32)
    targets = 1 / (1 + np.exp(-emb[:, 0] * 2))
    head, hist = train_head(emb, targets, HeadTrainConfig(epochs=60, val_fraction=0.2, patience=60))
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    with torch.no_grad():
        pred = head(torch.from_numpy(emb)).numpy()
    from deqa.metrics import srcc

    assert srcc(pred, targets) > 0.9
    for loss in ("mse",):
        _, h2 = train_head(emb, targets, HeadTrainConfig(loss=loss, epochs=5, val_fraction=0.0))
        assert h2[-1]["train_loss"] < h2[0]["train_loss"]
    policy = ThresholdPolicy.from_dict({"levels": [{"label": "ok", "min_score": 0.5, "action": "keep"},
                                                    {"label": "bad", "min_score": 0.0, "action": "drop"}]})
    save_encoder_head(tmp_path / "m", enc.spec, head, thresholds=policy, model_id="tiny-head")
    scorer = load_baseline(tmp_path / "m")
    assert isinstance(scorer, EncoderHeadScorer) and scorer.thresholds == policy
    imgs = _images(3, seed=4)
    direct = EncoderHeadScorer(enc, head)
    a = [r.score_0_1 for r in scorer.score(imgs)]
    scorer.head.train()  # dropout must stay off when scoring
    b = [r.score_0_1 for r in scorer.score(imgs)]
    c = [r.score_0_1 for r in direct.score(imgs)]
    assert a == b and np.allclose(a, c)
    assert json.loads((tmp_path / "m" / "deqa_baseline.json").read_text())["type"] == "encoder_head"


def test_train_head_rejects_bad_targets_and_nan():
    emb = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        train_head(emb, np.array([0.1, 0.2, 1.5, 0.3]), HeadTrainConfig(epochs=1))
    emb[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_head(emb, np.array([0.1, 0.2, 0.5, 0.3]), HeadTrainConfig(epochs=1))
    with pytest.raises(ValueError, match="unknown key"):
        HeadTrainConfig.from_dict({"epochz": 3})


def test_score_table_reading_and_errors(tmp_path):
    t = tmp_path / "scores.csv"
    t.write_text("image,score\na.jpg,1\nsub/b.jpg,5\n")
    images, scores = read_score_table(t, score_range=(1, 5))
    assert images == [str(tmp_path / "a.jpg"), str(tmp_path / "sub/b.jpg")]
    assert scores.tolist() == [0.0, 1.0]
    t.write_text("image,score\na.jpg,1\nb.jpg,7\n")
    with pytest.raises(ValueError, match=r"scores.csv:3: score 7.0 outside"):
        read_score_table(t, score_range=(1, 5))
    t.write_text("path,mos\na.jpg,1\n")
    with pytest.raises(ValueError, match="columns 'image' and 'score'"):
        read_score_table(t)
    j = tmp_path / "s.jsonl"
    j.write_text('{"image": "a.jpg", "score": 0.5}\n{"image": "b.jpg", "score": "x"}\n')
    with pytest.raises(ValueError, match=r"s.jsonl:2: score 'x' is not a number"):
        read_score_table(j)


def test_score_table_excel_bom_path_aliases_and_missing_images(tmp_path):
    t = tmp_path / "excel.csv"
    # Excel's "CSV UTF-8": a byte-order mark before the header, CRLF line ends.
    t.write_bytes("\ufeffimage,score\r\na.jpg,0.25\r\n".encode())
    assert read_score_table(t) == ([str(tmp_path / "a.jpg")], pytest.approx([0.25]))
    # The image column under the names deqa-score manifests accept (any case).
    t.write_bytes("\ufeffFilename,Score\na.jpg,0.5\n".encode())
    images, scores = read_score_table(t)
    assert images == [str(tmp_path / "a.jpg")] and scores.tolist() == [0.5]
    t.write_text("image,score\na.jpg,0.5\n\n,0.1\n")
    with pytest.raises(ValueError, match=r"excel.csv:4: empty image path"):
        read_score_table(t)
    # check_images: every missing file is named with its row, before anything is embedded.
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    t.write_text("image,score\na.jpg,0.5\nb.png,0.1\nc.jpg,1\n")
    assert read_score_table(t)[0][1] == str(tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"2 image\(s\) of the table not found: .*excel.csv:2: .*a.jpg; .*excel.csv:4: .*c.jpg$"):
        read_score_table(t, check_images=True)


def test_head_train_and_score_through_the_cli(tiny_dinov2, tmp_path, capsys):
    from deqa.cli.main import main as deqa_main

    rows = ["image,score"] + [f"{p.name},{1 + (i % 5)}" for i, p in enumerate(_saved_images(tmp_path, 12, seed=7, prefix="im"))]
    (tmp_path / "scores.csv").write_text("\n".join(rows) + "\n")
    args = ["baseline", "head-train", "--table", str(tmp_path / "scores.csv"), "--score-range", "1,5",
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "head"), "--encoder", "hf",
            "--encoder-path", tiny_dinov2, "--config", '{"epochs": 3, "val_fraction": 0.0}']
    assert deqa_main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (first["cache_hits"], first["cache_misses"]) == (0, 12)
    assert deqa_main(args) == 0  # second pass: every embedding comes from the cache
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["cache_hits"], second["cache_misses"]) == (12, 0)
    assert deqa_main(["baseline", "head-score", "--model", str(tmp_path / "head"), str(tmp_path / "im0.png"),
                      str(tmp_path / "im1.png")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split("\t") == ["input", "score", "score_0_1", "level", "label", "action"] and len(out) == 3
    def with_(flag, value, argv=args):  # args with one option set (replaced or appended)
        i = argv.index(flag) if flag in argv else None
        return [*argv[:i], flag, value, *argv[i + 2:]] if i is not None else [*argv, flag, value]

    bad = tmp_path / "bad.csv"
    bad.write_text("image,score\nim0.png,9\n")
    assert deqa_main(with_("--table", str(bad))) == 1
    assert f"head-train: error: {bad}:2: score 9.0 outside the score range" in capsys.readouterr().err
    # A missing or an unreadable image: one line naming it, its row and the table; no head is written.
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for row, message in (("gone.png,3", f"{bad}:3: {tmp_path / 'gone.png'}"),
                         ("broken.png,3", f"--table {bad}: {tmp_path / 'broken.png'}: ")):
        bad.write_text(f"image,score\nim0.png,1\n{row}\n")
        out = tmp_path / "head2"
        assert deqa_main(with_("--out", str(out), with_("--table", str(bad)))) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and not out.exists()
    for flag, value, message in (("--score-range", "5,1", "--score-range must be 'lo,hi' with hi > lo"),
                                 ("--thresholds", '{"levels": 3}', '--thresholds: expected {"levels"'),
                                 ("--config", '{"epochz": 1}', "--config: head training config: unknown key(s) ['epochz']")):
        assert deqa_main(with_(flag, value)) == 1
        assert f"head-train: error: {message}" in capsys.readouterr().err
    # --out a degradation model's folder: refused, its config left as it was (it was replaced).
    from deqa.baselines import builtin_model_dir

    cnn = tmp_path / "cnn"
    shutil.copytree(builtin_model_dir(), cnn)
    before = (cnn / "deqa_baseline.json").read_bytes()
    assert deqa_main(with_("--out", str(cnn))) == 1
    assert "holds a degradation baseline" in capsys.readouterr().err
    assert (cnn / "deqa_baseline.json").read_bytes() == before


def test_embed_goes_on_past_a_broken_image(tiny_dinov2, tmp_path, capsys):
    from deqa.cli.baseline import main

    _saved_images(tmp_path, 3, seed=9, prefix="im")
    (tmp_path / "im1b.png").write_bytes(b"not a png")
    argv = ["embed", str(tmp_path), str(tmp_path / "gone.png"), "--cache", str(tmp_path / "cache"),
            "--encoder", "hf", "--encoder-path", tiny_dinov2, "--batch-size", "2"]
    assert main(argv) == 2  # as deqa-score: some inputs failed, the others done
    out, err = capsys.readouterr()
    assert f"failed: {tmp_path / 'im1b.png'}: " in err and f"failed: {tmp_path / 'gone.png'}: no such file" in err
    assert "5 images: 0 cached, 3 computed, 2 failed" in out
    assert main(argv) == 2 and "5 images: 3 cached, 0 computed, 2 failed" in capsys.readouterr().out


def test_diagnose_reports_a_head_left_in_train_mode(tiny_dinov2, tmp_path):
    from deqa.baselines.diagnostics import diagnose

    enc = build_encoder(EncoderSpec(name="hf", path=tiny_dinov2))
    torch.manual_seed(0)
    save_encoder_head(tmp_path / "m", enc.spec, QualityHead(enc.dim))
    scorer = load_baseline(tmp_path / "m")
    imgs = _images(2, seed=3)
    assert diagnose(scorer, imgs)["modules_in_train_mode"] == {"encoder": [], "head": []}
    scorer.head.train()
    report = diagnose(scorer, imgs)
    # Reported as found, then switched to eval for the other checks (and the report says so).
    assert report["modules_in_train_mode"]["head"][:2] == ["QualityHead", "net"] and report["modules_in_train_mode"]["encoder"] == []
    assert report["modules_set_to_eval"] == ["head"] and not scorer.head.training
    assert not report["ok"] and any("module 'head' was in training mode" in p for p in report["problems"])


def test_the_embedding_cache_key_follows_the_weights_bytes(tiny_dinov2, tmp_path):
    """Other weights under the same file name and size (a fine-tuned copy written over the first)
    must not be served the first weights' cached embeddings."""
    import shutil

    from safetensors.torch import load_file, save_file

    from deqa.baselines.encoders import _file_id

    a, b = tmp_path / "a" / "w.safetensors", tmp_path / "b" / "w.safetensors"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"\0" * 64)
    b.write_bytes(b"\0" * 63 + b"\1")  # same name, same size
    assert _file_id(a) != _file_id(b)
    b.write_bytes(b"\0" * 64)
    assert _file_id(a) == _file_id(b)
    # A local transformers folder (no commit to name its weights): retrained in place, another key.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dinov2, copy)
    first = build_encoder(EncoderSpec(name="hf", path=str(copy))).cache_id
    assert build_encoder(EncoderSpec(name="hf", path=str(copy))).cache_id == first
    (weights,) = copy.glob("*.safetensors")
    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 1.0
    save_file(state, weights, metadata={"format": "pt"})
    assert build_encoder(EncoderSpec(name="hf", path=str(copy))).cache_id != first


def test_a_relative_encoder_path_is_saved_absolute(tiny_dinov2, tmp_path, monkeypatch, capsys):
    from deqa.cli.main import main as deqa_main

    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_dinov2, work / "enc")
    rows = ["image,score"] + [f"{p.name},{1 + (i % 5)}" for i, p in enumerate(_saved_images(work, 6, seed=3, prefix="im"))]
    (work / "scores.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(work)
    assert deqa_main(["baseline", "head-train", "--table", "scores.csv", "--score-range", "1,5", "--cache", "cache",
                      "--out", "head", "--encoder", "hf", "--encoder-path", "enc",
                      "--config", '{"epochs": 1, "val_fraction": 0.0}']) == 0
    monkeypatch.chdir(tmp_path)  # elsewhere: the saved encoder path must still resolve
    assert deqa_main(["baseline", "head-score", "--model", str(work / "head"), str(work / "im0.png")]) == 0
    saved = json.loads((work / "head" / "deqa_baseline.json").read_text())
    assert json.dumps(saved).count(str(work / "enc")) >= 1
