"""Fine-tuning the encoder branch end to end: what trains, what stays, resume, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deqa.baselines import branch_finetune as bf
from deqa.baselines import load_baseline
from deqa.baselines.branch_finetune import BranchFinetuneConfig, finetune_branch
from deqa.baselines.branch_train import BranchTrainConfig, train_branch
from deqa.baselines.degradation import (
    DegradationModelConfig,
    DegradationNet,
    load_degradation_model,
    save_degradation_model,
)
from deqa.baselines.degradation_numpy import NumpyDegradationScorer
from deqa.baselines.encoder_branch import BranchedDegradationNet
from deqa.baselines.synth import SynthConfig, render_dataset

HEADS = DegradationModelConfig().heads


@pytest.fixture(scope="module")
def branched(tmp_path_factory):
    """Tiny rendered sets (64 px) and a CNN + frozen-trunk branch model trained on them."""
    root = tmp_path_factory.mktemp("finetune")
    from skimage import data

    photo = root / "coffee.png"
    Image.fromarray(data.coffee()).resize((150, 100)).save(photo)
    train = render_dataset([photo], root / "train", 80, SynthConfig(size=64), seed=1, progress=False)
    val = render_dataset([photo], root / "val", 24, SynthConfig(size=64), seed=2, progress=False)
    sweep = render_dataset([photo], root / "val_sweep_blur", 24, SynthConfig(size=64, sweep="blur"), seed=3, progress=False)
    torch.manual_seed(0)
    save_degradation_model(DegradationNet(DegradationModelConfig(image_size=64)), root / "cnn", extra={"model_id": "unit-cnn"})
    train_branch(BranchTrainConfig(cnn=str(root / "cnn"), train_data=[str(train)], val_data=str(val), out_dir=str(root / "model"),
                                   epochs=2, batch_size=32, warmup_steps=0, num_threads=1, branch={"taps": [-1, 2, 4]}),
                 progress=False)
    return {"train": train, "val": val, "sweep": sweep, "model": root / "model", "cnn": root / "cnn"}


def _cfg(b, out, **kw):
    base = dict(model=str(b["model"]), train_data=[str(b["train"])], val_data=str(b["val"]), out_dir=str(out),
                val_sweeps=[str(b["sweep"])], epochs=2, batch_size=32, lr=1e-3, warmup_steps=0, frozen_blocks=3,
                checkpoint_every=1, log_every=1, num_threads=1)
    return BranchFinetuneConfig(**{**base, **kw})


def _state(folder):
    m = load_degradation_model(folder)
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_later_blocks_and_head_train_the_rest_stays(branched, tmp_path):
    summary = finetune_branch(_cfg(branched, tmp_path / "ft"), progress=False)
    before, after = _state(branched["model"]), _state(tmp_path / "ft")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # The CNN, the stem, blocks 0-2, every batch-norm statistic and the feature standardisation are untouched.
    for k in before:
        frozen = (k.startswith("cnn.") or k.startswith("branch.trunk._conv_stem") or k.startswith("branch.trunk._bn0")
                  or any(k.startswith(f"branch.trunk._blocks.{i}.") for i in range(3))
                  or k.endswith(("running_mean", "running_var")) or k.startswith("branch.feat_"))
        if frozen:
            assert k not in changed, k
    assert any(k.startswith("branch.trunk._blocks.3.") for k in changed)
    assert any(k.startswith("branch.trunk._blocks.4.") for k in changed)
    assert any(k.startswith("branch.head.") for k in changed)
    # Stored as the runtimes read it: the trunk in float16 (a float32 weight would not survive the round trip).
    m = load_degradation_model(tmp_path / "ft")
    assert isinstance(m, BranchedDegradationNet)
    w = m.branch.trunk._blocks[4]._project_conv.weight
    assert torch.equal(w, w.half().float())
    assert set(summary["mix"]) == set(HEADS) and summary["mix_choice"]["blur"]["by"] == "srcc"
    assert summary["best_epoch"] in (1, 2) and summary["n_train"] == 80
    log = [json.loads(x) for x in (tmp_path / "ft" / "finetune_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if "epoch" in r] == [1, 2] and log[-1]["mix"] == summary["mix"]
    saved = json.loads((tmp_path / "ft" / "deqa_baseline.json").read_text())
    assert saved["model_id"] == "unit-cnn" and saved["branch"]["mix"] == summary["mix"]
    assert saved["branch_finetune"] == {"trained_from_block": 3, "epochs": 2, "n_train": 80, "best_epoch": summary["best_epoch"]}
    scorer = load_baseline(tmp_path / "ft")  # the torch-free runtime reads the fine-tuned trunk
    assert isinstance(scorer, NumpyDegradationScorer)
    img = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    got = scorer.score([img])[0].details
    with torch.no_grad():
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
        want = m.intensities(x)[0].numpy()
    np.testing.assert_allclose([got[h] for h in HEADS], want, atol=2e-3)


def test_source_settings_carry_over(branched, tmp_path):
    """A model read through full-resolution windows is read so after fine-tuning too; the id can be renamed."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(branched["model"], src)
    cfg = json.loads((src / "deqa_baseline.json").read_text())
    cfg["views"] = {"grid": 2}
    (src / "deqa_baseline.json").write_text(json.dumps(cfg))
    finetune_branch(_cfg(branched, tmp_path / "ft", model=str(src), epochs=1, model_id="renamed"), progress=False)
    saved = json.loads((tmp_path / "ft" / "deqa_baseline.json").read_text())
    assert saved["views"] == {"grid": 2} and saved["model_id"] == "renamed"
    assert load_baseline(tmp_path / "ft").model_id.startswith("renamed@")
    # A model trained on ink-matched watermarks is fine-tuned on such sets only (refused before any
    # training step, naming the set).
    cfg["watermark_ink"] = True
    (src / "deqa_baseline.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"val_sweep_blur: rendered without --watermark-ink but the model was trained with it"):
        finetune_branch(_cfg(branched, tmp_path / "ft4", model=str(src), epochs=1), progress=False)
    assert not (tmp_path / "ft4" / "finetune_state.pt").exists()
    # On ink-matched sets it trains, and the output keeps the record.
    photo = branched["train"].parent / "coffee.png"
    ink = {name: render_dataset([photo], tmp_path / name, n, SynthConfig(size=64, watermark_ink=True, **kw), seed=seed, progress=False)
           for name, n, seed, kw in (("train4", 48, 1, {}), ("val4", 16, 2, {}), ("sweep4", 16, 3, {"sweep": "blur"}))}
    finetune_branch(_cfg(branched, tmp_path / "ft4", model=str(src), epochs=1, train_data=[str(ink["train4"])],
                         val_data=str(ink["val4"]), val_sweeps=[str(ink["sweep4"])]), progress=False)
    assert json.loads((tmp_path / "ft4" / "deqa_baseline.json").read_text())["watermark_ink"] is True


def test_interrupted_run_resumes_to_the_same_weights(branched, tmp_path, monkeypatch):
    finetune_branch(_cfg(branched, tmp_path / "whole"), progress=False)
    real = bf.head_loss
    calls = {"n": 0}

    def dies_at_step_4(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(bf, "head_loss", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        finetune_branch(_cfg(branched, tmp_path / "cut"), progress=False)
    monkeypatch.setattr(bf, "head_loss", real)
    assert (tmp_path / "cut" / bf.STATE_NAME).is_file() and not (tmp_path / "cut" / "deqa_baseline.json").exists()
    finetune_branch(_cfg(branched, tmp_path / "cut"), progress=False)
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)

    def rows(run):  # the log without its timings
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("seconds")}
                for line in (tmp_path / run / "finetune_log.jsonl").read_text().splitlines()]

    # Losses, running means included, as the uninterrupted run logged them.
    assert rows("cut")[:-1] == rows("whole")[:-1] and len([r for r in rows("cut") if "epoch" in r]) == 2


def test_errors_name_the_problem(branched, tmp_path):
    with pytest.raises(ValueError, match="without an encoder branch"):
        finetune_branch(_cfg(branched, tmp_path / "a", model=str(branched["cnn"])), progress=False)
    for k in (5, 9):
        with pytest.raises(ValueError, match=f"frozen_blocks {k} leaves no block to train: this trunk has 5 blocks"):
            finetune_branch(_cfg(branched, tmp_path / "b", frozen_blocks=k), progress=False)
    with pytest.raises(ValueError, match="device 'nonsense' cannot be used"):
        finetune_branch(_cfg(branched, tmp_path / "b", device="nonsense"), progress=False)
    # Sweep sets are checked like the training sets: another size, or heads in another order, would
    # grade a head on the wrong labels.
    root = branched["train"].parent
    photo = root / "coffee.png"
    other = render_dataset([photo], root / "sweep_96", 8, SynthConfig(size=96, sweep="blur"), seed=4, progress=False)
    reordered = render_dataset([photo], root / "sweep_rev", 8, SynthConfig(size=64, sweep="blur", heads=tuple(reversed(HEADS))),
                               seed=5, progress=False)
    with pytest.raises(ValueError, match="sweep_96: rendered at 96 px, the model reads 64 px"):
        finetune_branch(_cfg(branched, tmp_path / "b", val_sweeps=[str(other)]), progress=False)
    with pytest.raises(ValueError, match="sweep_rev: heads .* differ from the model's"):
        finetune_branch(_cfg(branched, tmp_path / "b", val_sweeps=[str(reordered)]), progress=False)
    with pytest.raises(ValueError, match="sweep_96: rendered at 96 px"):  # branch-train checks them too (it did before)
        train_branch(BranchTrainConfig(cnn=str(branched["cnn"]), train_data=[str(branched["train"])], val_data=str(branched["val"]),
                                       out_dir=str(tmp_path / "bt"), val_sweeps=[str(other)], epochs=1, num_threads=1), progress=False)
    with pytest.raises(ValueError, match="not a sweep set"):
        finetune_branch(_cfg(branched, tmp_path / "c", val_sweeps=[str(branched["val"])]), progress=False)
    with pytest.raises(ValueError, match="loss_weights names"):
        finetune_branch(_cfg(branched, tmp_path / "d", loss_weights={"blurr": 2.0}), progress=False)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        finetune_branch(_cfg(branched, tmp_path / "e"), progress=False)
    for bad in ({"lr": 0}, {"epochs": 0}, {"frozen_blocks": -1}, {"train_data": []}, {"frozen_blocks": "3"}, {"epochs": 1.5},
                {"weight_decay": -1}, {"lr": "1e-4"}, {"seed": True}):
        with pytest.raises(ValueError, match="branch fine-tuning"):
            _cfg(branched, tmp_path / "f", **bad)
    with pytest.raises(ValueError, match="unknown key"):
        BranchFinetuneConfig.from_dict({**_cfg(branched, tmp_path / "g").__dict__, "epoch": 1})


def test_resume_with_other_settings_is_refused(branched, tmp_path, monkeypatch):
    real = bf.head_loss

    def dies(*a, **k):
        raise KeyboardInterrupt

    # Step 1 trains and checkpoints (checkpoint_every=1); step 2 finds the checkpoint and dies.
    monkeypatch.setattr(bf, "head_loss", lambda *a, **k: dies() if (tmp_path / "r" / bf.STATE_NAME).exists() else real(*a, **k))
    with pytest.raises(KeyboardInterrupt):
        finetune_branch(_cfg(branched, tmp_path / "r"), progress=False)
    monkeypatch.setattr(bf, "head_loss", real)
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        finetune_branch(_cfg(branched, tmp_path / "r", lr=5e-4), progress=False)
    # The source retrained in place (same path, other weights) is another model.
    import shutil

    src = tmp_path / "src"
    shutil.copytree(branched["model"], src)
    monkeypatch.setattr(bf, "head_loss", dies)
    with pytest.raises(KeyboardInterrupt):
        finetune_branch(_cfg(branched, tmp_path / "s", model=str(src)), progress=False)
    monkeypatch.setattr(bf, "head_loss", real)
    from safetensors.torch import load_file, save_file

    cnn = load_file(src / "model.safetensors")
    first = sorted(cnn)[0]
    cnn[first] = cnn[first] + 1.0  # the CNN retrained in place, as far as its bytes go
    save_file(cnn, src / "model.safetensors", metadata={"format": "pt", "type": "degradation"})
    with pytest.raises(ValueError, match=r"other settings \(source_weights\)"):
        finetune_branch(_cfg(branched, tmp_path / "s", model=str(src)), progress=False)


def test_resume_reads_paths_as_the_same_files(branched, tmp_path, monkeypatch):
    real = bf.head_loss

    def dies_once_checkpointed(*a, **k):
        if (tmp_path / "x" / bf.STATE_NAME).exists():
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(bf, "head_loss", dies_once_checkpointed)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        finetune_branch(_cfg(branched, "x"), progress=False)
    monkeypatch.setattr(bf, "head_loss", real)
    finetune_branch(_cfg(branched, "./x"), progress=False)  # one run, spelled two ways
    assert (tmp_path / "x" / "deqa_baseline.json").is_file()


def test_a_run_stopped_before_its_first_checkpoint_starts_over(branched, tmp_path, monkeypatch):
    def dies(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(bf, "head_loss", dies)
    with pytest.raises(KeyboardInterrupt):
        finetune_branch(_cfg(branched, tmp_path / "t"), progress=False)
    monkeypatch.undo()
    assert (tmp_path / "t" / "finetune_config.json").is_file() and not (tmp_path / "t" / bf.STATE_NAME).exists()
    finetune_branch(_cfg(branched, tmp_path / "t"), progress=False)  # the same command: starts over, not refused
    rows = [json.loads(x) for x in (tmp_path / "t" / "finetune_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "step" in r] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "t" / "deqa_baseline.json").is_file()


def test_cli_runs_and_names_bad_input(branched, tmp_path, capsys):
    from deqa.cli.baseline import main

    common = ["--train-data", str(branched["train"]), "--val-data", str(branched["val"]), "--threads", "1"]
    assert main(["branch-finetune", "--model", str(branched["cnn"]), *common, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "without an encoder branch" in err and "Traceback" not in err
    with pytest.raises(SystemExit, match="branch-finetune: .*unknown key"):
        main(["branch-finetune", "--model", str(branched["model"]), *common, "--out", str(tmp_path / "b"), "--config", '{"epoch": 3}'])
    assert main(["branch-finetune", "--model", str(branched["model"]), *common, "--out", str(tmp_path / "c"), "--epochs", "1",
                 "--lr", "1e-4", "--config", '{"warmup_steps": 0, "log_every": 1}']) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_train"] == 80 and set(summary["mix"]) == set(HEADS)
    assert json.loads((tmp_path / "c" / "finetune_config.json").read_text())["lr"] == 1e-4
    # 'builtin' names the built-in model, as in deqa-score (a 224-px model: these 64-px sets are refused by name)
    assert main(["branch-finetune", "--model", "builtin", *common, "--out", str(tmp_path / "d")]) == 1
    assert "rendered at 64 px, the model reads 224 px" in capsys.readouterr().err


def test_model_card_says_the_trunk_was_fine_tuned(branched, tmp_path):
    from deqa.baselines.card import write_model_card

    out = tmp_path / "ft"
    summary = finetune_branch(_cfg(branched, out, epochs=1), progress=False)
    metrics = {"protocol": "deqa-heldout-v3", "image_size": 64,
               "mixed": {"n": 4, "overall_srcc_vs_weighted_total": 0.5, "overall_srcc_vs_sum": 0.5,
                         "heads": {h: {"mae": 0.1, "srcc": 0.5} for h in HEADS}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    branch_log = branched["model"] / "branch_train_log.jsonl"
    card = write_model_card(out, tmp_path / "metrics.json", [], lineage="the unit CNN", branch_log=branch_log,
                            finetune_log=out / "finetune_log.jsonl").read_text()
    assert "**Encoder branch**: an efficientnet-lite0 trunk (ImageNet weights" in card
    assert "its blocks 3-4 then fine-tuned on the training crops" in card and "a frozen" not in card
    assert "- Encoder branch fine-tuning, after the MLP: blocks 3-4 of the trunk and the MLP trained end to end on 80 crops (train)" in card
    assert "the stem, blocks 0-2 and every batch-norm statistic stay ImageNet's: AdamW (lr 0.001, weight decay 0.0001), batch 32" in card
    assert f"1 epoch; validation loss {summary['best_val_loss']:.4f} (epoch 1, kept)" in card
    assert "share per head was chosen on validation data (again after the fine-tuning): by grading SRCC" in card
    assert ", ".join(f"{h} {summary['mix'][h]:.2f}" for h in HEADS) in card
    # Without its log the card would state the frozen branch's blend, not the one the model uses.
    with pytest.raises(ValueError, match="was fine-tuned .* give its finetune_log.jsonl"):
        write_model_card(out, tmp_path / "metrics.json", [], lineage="the unit CNN", branch_log=branch_log)
    # A build that only fine-tunes a model it did not train: lineage + the fine-tuning log are enough.
    card = write_model_card(out, tmp_path / "metrics.json", [], lineage="v-unit", finetune_log=out / "finetune_log.jsonl").read_text()
    assert "- Encoder branch fine-tuning, after the MLP" in card and "- Training set: 80 random crops" in card
    # The source model was not fine-tuned: a fine-tuning log is not its.
    with pytest.raises(ValueError, match="no fine-tuned branch"):
        write_model_card(branched["model"], tmp_path / "metrics.json", [], lineage="x", branch_log=branch_log,
                         finetune_log=out / "finetune_log.jsonl")
    with pytest.raises(ValueError, match="fine-tuning log .*nope.jsonl is not a file"):
        write_model_card(out, tmp_path / "metrics.json", [], lineage="x", branch_log=branch_log, finetune_log=tmp_path / "nope.jsonl")


def test_every_trainer_names_a_device_it_cannot_use(branched, tmp_path, capsys):
    """train, branch-train and branch-finetune: one line naming the device, nothing written."""
    from deqa.cli.baseline import main

    data = ["--train-data", str(branched["train"]), "--val-data", str(branched["val"])]
    for cmd in (["train"], ["branch-train", "--cnn", str(branched["cnn"])], ["branch-finetune", "--model", str(branched["model"])]):
        out = tmp_path / cmd[0]
        assert main([*cmd, *data, "--out", str(out), "--device", "nonsense"]) == 1
        err = capsys.readouterr().err
        assert "device 'nonsense' cannot be used" in err and "Traceback" not in err, (cmd, err)
        assert not out.exists()
