"""DeQA training on tiny random VLMs (CPU, offline): collator, what is trained, learning, resume,
QLoRA, checkpoints that score through deqa-score, export --merge."""

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deqa.training.config import RESOLVED_CONFIG_NAME, load_train_config
from deqa.training.recipe import DeQARecipe

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "train" / "tiny_cpu.yaml"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny matmuls: one thread is faster, and two threads on a shared 2-core box thrash.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def qwen(tiny_vlm_path):
    # Text init range 0.1: large enough for a frozen random LM head to separate the level logits,
    # small enough not to saturate attention (0.3 does, and then nothing routes the image).
    return tiny_vlm_path("qwen2_5_vl", text_initializer_range=0.1)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    from deqa.training.synthetic import make_synthetic_task

    return make_synthetic_task(tmp_path_factory.mktemp("synthetic"), n_train=2048, n_val=128, seed=0)


@pytest.fixture
def make_config(qwen, task, tmp_path):
    def make(*overrides, out=None):
        return load_train_config(
            TINY,
            [
                f"model_name_or_path={qwen}",
                f"train_manifests=[{task.train_manifest}]",
                f"eval_manifest={task.val_manifest}",
                f"output_dir={out or tmp_path / 'run'}",
                "report_to=none",
                "disable_tqdm=true",
                *overrides,
            ],
        )

    return make


def _base_weights(folder) -> dict[str, torch.Tensor]:
    # Through from_pretrained: saved files may use the family's legacy key names.
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder).state_dict()


def _fixed_batch(recipe, n_pairs=4):
    ds = recipe.trainer.train_dataset
    return recipe.trainer.data_collator([ds[(i, i + 1)] for i in range(0, 2 * n_pairs, 2)])


def _loss(recipe, batch):
    trainer = recipe.trainer
    trainer.model.eval()
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, dict(batch)))


# ------------------------------------------------------------------------------------ collator
def test_collator_answer_labels_and_level_positions(make_config):
    recipe = DeQARecipe(make_config("eval_strategy=no", "load_best_model_at_end=false"))
    recipe.setup()
    batch = _fixed_batch(recipe, n_pairs=3)
    tok = recipe.built.processor.tokenizer
    ids, labels, pos = batch["input_ids"], batch["labels"], batch["level_positions"]
    assert ids.shape[0] == 6 and batch["level_probs"].shape == (6, 5)
    assert batch["pair_a"].tolist() == [0, 1, 2] and batch["pair_b"].tolist() == [3, 4, 5]
    level_ids = recipe.built.level_token_ids
    for row in range(6):
        want = level_ids[int(batch["level_probs"][row].argmax())]
        assert ids[row, pos[row]] == want  # the level token sits at the level position
        answer = labels[row] != -100
        assert answer.nonzero()[0, 0] == pos[row]  # labels start at the level token ...
        assert answer[pos[row]:].all() and not answer[: pos[row]].any()  # ... and cover the rest
        text = tok.decode(ids[row, pos[row] - 6 : pos[row] + 2])
        assert "The quality of the image is" in text
    # left padding: every answer ends at the last position
    assert (batch["attention_mask"][:, -1] == 1).all()


def _no_weights(monkeypatch):
    # What loads the weights (the processor and the meta-device skeleton may load).
    from transformers import AutoModelForImageTextToText

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded before the mistake was found")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", refuse)


def test_prompt_longer_than_max_length_fails_before_the_weights_load(make_config, monkeypatch):
    from deqa.training.collator import DeQACollator
    from deqa.training.data import TrainingDataError
    from deqa.training.model import load_training_prompt

    _no_weights(monkeypatch)
    recipe = DeQARecipe(make_config("max_length=12", "eval_strategy=no", "load_best_model_at_end=false"))
    with pytest.raises(TrainingDataError, match=r"train/\d+\.png: the prompt is \d+ tokens .*over max_length=12"):
        recipe.setup()
    # Any later batch names its own image (the error text carries no batch index).
    prompt = load_training_prompt(recipe.config.model)
    collator = DeQACollator(prompt.processor, prompt.deqa_config, prompt.level_token_ids, max_length=12)
    from deqa.training.data import build_train_dataset

    ds = build_train_dataset(recipe.config.data.train_manifests)
    with pytest.raises(TrainingDataError, match=rf"^{re.escape(ds.samples[5].image)}: the prompt is"):
        collator([ds[(5, 6)]])


def _cli_argv(qwen, task, tmp_path, *overrides):
    return [
        "--config", str(TINY), f"model_name_or_path={qwen}", f"train_manifests=[{task.train_manifest}]",
        f"eval_manifest={task.val_manifest}", f"output_dir={tmp_path / 'run'}", "report_to=none",
        "disable_tqdm=true", *overrides,
    ]  # fmt: skip


def _manifest_rows(task, n, tmp_path, name, *, broken=False) -> Path:
    """The first n rows of the synthetic train manifest (absolute image paths) + an empty image."""
    rows = [json.loads(line) for line in task.train_manifest.read_text().splitlines()[:n]]
    for row in rows:
        row["image"] = str(task.train_manifest.parent / row["image"])
    if broken:
        (tmp_path / "empty.png").write_bytes(b"")
        rows.append(dict(rows[0], image=str(tmp_path / "empty.png")))
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("per_device_train_batch_size=0", "per_device_train_batch_size must be >= 1, got 0"),
        ("max_length=5", r"train/\d+\.png: the prompt is \d+ tokens \(image tokens included\), over max_length=5;"),
        ("single image", r"data set synthetic \(.*one\.jsonl\) has a single training image: .*fidelity_weight: 0"),
        ("missing model", r"model_name_or_path .*no-model: no such folder"),
        ("lora_target_modules=.*q_prj", r"lora_target_modules '\.\*q_prj' matches no module of this model"),
    ],
)
def test_cli_input_mistakes_fail_before_the_weights_load(qwen, task, tmp_path, capsys, monkeypatch, case, message):
    # Each used to end in a traceback after the model had loaded (or at the first step).
    from deqa.cli.train import main

    _no_weights(monkeypatch)
    extra = {
        "single image": [f"train_manifests=[{_manifest_rows(task, 1, tmp_path, 'one.jsonl')}]"],
        "missing model": [f"model_name_or_path={tmp_path / 'no-model'}"],
    }.get(case, [case])
    assert main(_cli_argv(qwen, task, tmp_path, *extra)) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and re.match(f"deqa-train: error: .*{message}", err), err


@pytest.mark.parametrize("workers", [0, 1])
def test_cli_image_failing_during_training_is_a_one_line_error(qwen, task, tmp_path, capsys, workers):
    # An image that only fails when drawn (after the weights have loaded) ends in one line too,
    # also when a DataLoader worker re-raises it with the worker's traceback in its text.
    from deqa.cli.train import main

    manifest = _manifest_rows(task, 2, tmp_path, "broken.jsonl", broken=True)
    argv = _cli_argv(
        qwen, task, tmp_path, f"train_manifests=[{manifest}]", "eval_manifest=null", "eval_strategy=no",
        "load_best_model_at_end=false", "save_strategy=no", "max_steps=1", f"dataloader_num_workers={workers}",
    )  # fmt: skip
    assert main(argv) == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    err = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert err == [f"deqa-train: error: {tmp_path / 'empty.png'}: empty file (0 bytes)"]


# ------------------------------------------------------------------------------ what is trained
def test_lora_steps_lower_the_loss_and_change_only_the_adapters(make_config, qwen):
    recipe = DeQARecipe(
        make_config(
            "train_vision_tower=false", "train_projector=false", "max_steps=15", "learning_rate=2e-3",
            "eval_strategy=no", "load_best_model_at_end=false", "save_strategy=no", "warmup_steps=0",
        )
    )
    recipe.setup()
    batch = _fixed_batch(recipe)
    before = _loss(recipe, batch)
    recipe.train()
    after = _loss(recipe, batch)
    assert after < before
    base = _base_weights(qwen)
    model = recipe.trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(".language_model.layers." in n for n in trainable)  # the LM only, by default
    changed_lora = 0
    for name, p in model.named_parameters():
        if "lora_B" in name:
            changed_lora += int(p.abs().sum() > 0)  # B starts at zero
        elif "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p.detach(), base[key]), f"base weight {key} changed"
    assert changed_lora == sum("lora_B" in n for n in trainable)


def test_vision_tower_and_projector_are_trained_fully_and_saved(make_config, tmp_path):
    recipe = DeQARecipe(
        make_config("max_steps=2", "eval_strategy=no", "load_best_model_at_end=false", "save_strategy=no")
    )
    recipe.setup()
    assert recipe.built.vision_tower == "model.visual" and recipe.built.projector == "model.visual.merger"
    model = recipe.trainer.model
    visual = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and ".visual." in n}
    assert visual and any(".merger." in n for n in visual)
    recipe.train()
    out = recipe.cleanup()
    moved = sum(not torch.equal(p.detach(), visual[n]) for n, p in model.named_parameters() if n in visual)
    assert moved > len(visual) // 2
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert any(".visual." in k for k in saved) and any("lora_A" in k for k in saved)


def test_full_fine_tuning_trains_every_weight(make_config, qwen):
    from deqa.training.config import ConfigWarning

    with pytest.warns(ConfigWarning, match="lora_alpha, lora_dropout, lora_r set but unused with tuning=full"):
        config = make_config(  # tiny_cpu.yaml's LoRA settings, now unused: said, not silently dropped
            "tuning=full", "train_vision_tower=false", "train_projector=false", "max_steps=2",
            "eval_strategy=no", "load_best_model_at_end=false", "save_strategy=no",
        )
    recipe = DeQARecipe(config)
    recipe.setup()
    model = recipe.trainer.model
    assert all(p.requires_grad for p in model.parameters())
    recipe.train()
    out = recipe.cleanup()
    base = _base_weights(qwen)
    saved = _base_weights(out)
    key = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(saved[key], base[key])
    assert (out / "deqa_config.json").is_file() and not (out / "adapter_config.json").exists()


def test_qlora_runs_on_cpu(make_config):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    recipe = DeQARecipe(
        make_config(
            "tuning=qlora", "bnb_4bit_compute_dtype=float32", "train_vision_tower=false", "max_steps=3",
            "eval_strategy=no", "load_best_model_at_end=false", "save_strategy=no",
        )
    )
    recipe.setup()
    model = recipe.trainer.model
    quantised = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and all(".language_model." in n for n in quantised)
    assert not any(".visual." in n for n in quantised)  # skipped by its full path
    batch = _fixed_batch(recipe, 2)
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    out = recipe.train()
    assert np.isfinite(out.training_loss)
    assert any(not torch.equal(p, lora_b[n]) for n, p in model.named_parameters() if n in lora_b)
    assert np.isfinite(_loss(recipe, batch))


# --------------------------------------------------------------------------------- validation
def test_validation_fidelity_is_the_training_term_over_all_pairs():
    from deqa.losses import DeQALossWeights, deqa_loss
    from deqa.training.trainer import _all_pairs_fidelity

    gen = torch.Generator().manual_seed(0)
    level_ids = torch.tensor([2, 3, 5, 7, 8])

    def case(n, groups, fidelity_std):
        logits = torch.randn(n, 2, 11, generator=gen, dtype=torch.float64)
        probs = torch.softmax(logits[:, 0, level_ids], dim=-1)  # deqa_loss reads position 0
        mos = 1 + 4 * torch.rand(n, generator=gen, dtype=torch.float64)
        std = 0.2 + torch.rand(n, generator=gen, dtype=torch.float64)
        weights = DeQALossWeights(ce=0, kl=0, fidelity=1, fidelity_std=fidelity_std)
        want = 0.0
        for g in groups:  # the training loss itself, fed every ordered pair of the group
            pairs = torch.tensor([(i, j) for i in g for j in g if i != j])
            out = deqa_loss(
                logits, torch.full((n, 2), -100), torch.ones(n, dtype=torch.long), level_ids, probs,
                mos=mos, mos_std=std, pair_a=pairs[:, 0], pair_b=pairs[:, 1], weights=weights,
            )  # fmt: skip
            want += len(g) * float(out.fidelity)
        return _all_pairs_fidelity(probs, mos, std, [np.asarray(g) for g in groups], weights), want / n

    for fidelity_std in (1.0, None):
        got, want = case(7, [[0, 2, 3, 6], [1, 4, 5]], fidelity_std)  # two data sets, by size
        assert got == pytest.approx(want, rel=1e-12)
    got, want = case(1100, [list(range(1100))], 1.0)  # computed in two blocks of rows
    assert got == pytest.approx(want, rel=1e-9)
    ones = torch.ones(3, dtype=torch.float64)
    singles = [np.array([0]), np.array([1]), np.array([2])]  # no data set has two images
    assert _all_pairs_fidelity(torch.full((3, 5), 0.2), ones, ones, singles, DeQALossWeights()) is None


def test_validation_logs_every_loss_term_and_eval_loss_includes_fidelity(make_config):
    recipe = DeQARecipe(
        make_config(
            "eval_max_samples=32", "per_device_eval_batch_size=16", "save_strategy=no", "load_best_model_at_end=false"
        )
    )
    recipe.setup()
    metrics = recipe.trainer.evaluate()
    assert {"eval_loss_ce", "eval_loss_kl", "eval_loss_fidelity"} <= set(metrics)
    args = recipe.config.training
    parts = (
        args.ce_weight * metrics["eval_loss_ce"]
        + args.kl_weight * metrics["eval_loss_kl"]
        + args.fidelity_weight * metrics["eval_loss_fidelity"]
    )
    assert metrics["eval_loss_fidelity"] > 0.01
    assert metrics["eval_loss"] == pytest.approx(parts, abs=1e-5)


# ------------------------------------------------------------------------------------ noise
def test_training_and_adapter_loading_raise_no_peft_deprecation_warning(make_config):
    # peft reads model.is_gradient_checkpointing, deprecated in transformers 5: a FutureWarning
    # on every get_peft_model (training) and PeftModel.from_pretrained (scoring, eval, export).
    from deqa.models.loading import load_vlm

    recipe = DeQARecipe(make_config("eval_strategy=no", "load_best_model_at_end=false", "save_strategy=no"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recipe.setup()
        out = recipe.cleanup()  # an adapter checkpoint, untrained
        load_vlm(out, device="cpu")
    assert [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)] == []


@pytest.mark.parametrize("offline", ["1", None])
def test_config_error_prints_only_the_error(offline):
    # Every deqa-train call used to open with bitsandbytes' offline kernel notice ("Skipping
    # publisher trust check ...", "Failed to load CPU gemm_4bit_forward ..."), a typo included;
    # without HF_HUB_OFFLINE and without a network it reads "... could not verify publisher trust".
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"} | {"PYTHONPATH": str(ROOT)}
    if offline:
        env["HF_HUB_OFFLINE"] = offline
    proc = subprocess.run(
        [sys.executable, "-m", "deqa.cli.train", "--config", str(TINY), "lerning_rate=1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "deqa-train: error: unknown key 'lerning_rate' in the command-line overrides (did you mean "
        "'learning_rate' or 'logging_strategy'?); valid keys are the fields of ModelArguments, "
        "DataArguments, LoraArguments and DeQATrainingArguments"
    ]


# ----------------------------------------------------------------------------- learning + scoring
def test_learning_scoring_and_export(make_config, task, tmp_path, capsys):
    """The DeQA objective teaches a tiny random VLM to see blur and noise: held-out SRCC >= 0.9
    on photographs never seen in training. The checkpoint then scores through deqa-score with
    the same numbers, and `deqa export --merge` gives the same scores without peft."""
    from deqa.cli.export import main as export_main
    from deqa.cli.score import main as score_main

    out = tmp_path / "learn"
    recipe = DeQARecipe(make_config("report_to=tensorboard", out=out))
    recipe.setup()
    recipe.train()
    recipe.cleanup()
    state = recipe.trainer.state
    evals = [e for e in state.log_history if "eval_srcc" in e]
    best = max(e["eval_srcc"] for e in evals)
    with capsys.disabled():  # shown with -s: the number BENCHMARKS.md quotes
        print(f"\nheld-out SRCC by step: {[(e['step'], round(e['eval_srcc'], 4)) for e in evals]}")
    assert best >= 0.9
    assert state.best_metric == pytest.approx(best)
    # every loss term is logged (and written to TensorBoard)
    train_logs = [e for e in state.log_history if "loss" in e]
    assert all({"loss_ce", "loss_kl", "loss_fidelity"} <= set(e) for e in train_logs)
    assert train_logs[-1]["loss_fidelity"] < train_logs[0]["loss_fidelity"]
    assert {"eval_loss_ce", "eval_loss_kl", "eval_loss_fidelity", "eval_mae", "eval_plcc_fitted"} <= set(evals[-1])
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    # checkpoints hold adapter, processor, deqa_config.json and the resolved config
    ckpts = sorted(out.glob("checkpoint-*"))
    assert ckpts
    for folder in [out, *ckpts]:
        for name in ("adapter_model.safetensors", "processor_config.json", "deqa_config.json", RESOLVED_CONFIG_NAME):
            assert (folder / name).is_file(), f"{folder.name} lacks {name}"
    assert json.loads((out / "deqa_config.json").read_text())["base_model"] == str(Path(recipe.config.model.model_name_or_path).resolve())

    # deqa-score --model <output dir> reproduces the validation SRCC of the best checkpoint
    scores_file = tmp_path / "scores.jsonl"
    assert score_main(["--model", str(out), str(task.root / "val"), "-o", str(scores_file), "--format", "jsonl", "-q"]) == 0
    scored = {Path(r["input"]).name: r["score"] for r in map(json.loads, scores_file.read_text().splitlines())}
    mos = {Path(r["image"]).name: r["mos"] for r in map(json.loads, task.val_manifest.read_text().splitlines())}
    from deqa.metrics import srcc

    names = sorted(mos)
    assert len(scored) == len(names)
    assert srcc([scored[n] for n in names], [mos[n] for n in names]) == pytest.approx(best, abs=1e-6)

    # export --merge, default dtype: a plain float32 model (the run's dtype) that scores exactly
    # as the checkpoint does; bf16 used to be the default and moved scores by ~1e-3.
    merged = tmp_path / "merged"
    assert export_main([str(out), "--merge", "-o", str(merged)]) == 0
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    assert {t.dtype for t in load_file(str(merged / "model.safetensors")).values()} == {torch.float32}
    some = [str(task.root / "val" / n) for n in names[:8]]
    rows = {}
    for name, model in (("run", out), ("merged", merged)):
        path = tmp_path / f"{name}-some.jsonl"
        assert score_main(["--model", str(model), *some, "-o", str(path), "--format", "jsonl", "-q"]) == 0
        rows[name] = [(r["input"], r["score"], r["probs"]) for r in map(json.loads, path.read_text().splitlines())]
    assert rows["merged"] == rows["run"]
    assert export_main([str(out), "--merge", "-o", str(tmp_path / "bf16"), "--dtype", "bf16"]) == 0
    assert {t.dtype for t in load_file(str(tmp_path / "bf16" / "model.safetensors")).values()} == {torch.bfloat16}
    assert export_main([str(merged), "--merge", "-o", str(tmp_path / "again")]) == 1
    assert "not a LoRA checkpoint" in capsys.readouterr().err


def test_export_auto_dtype_is_the_runs_dtype(qwen, tmp_path):
    from deqa.training.export import checkpoint_dtype

    ckpt = tmp_path / "checkpoint-10"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(qwen)}))
    assert checkpoint_dtype(ckpt) == torch.float32  # no resolved config: the base config's dtype
    for name, dtype in [("bfloat16", torch.bfloat16), ("float16", torch.float16), ("float32", torch.float32)]:
        (ckpt / RESOLVED_CONFIG_NAME).write_text(f"model_name_or_path: {qwen}\ndtype: {name}\n")
        assert checkpoint_dtype(ckpt) == dtype
    (ckpt / RESOLVED_CONFIG_NAME).write_text("dtype: auto\n")  # "auto" loaded the base's own dtype
    assert checkpoint_dtype(ckpt) == torch.float32


# ------------------------------------------------------------------------------------- resume
class _Crash(RuntimeError):
    pass


def test_killed_run_resumes_to_the_same_loss_curve(make_config, tmp_path):
    from transformers import TrainerCallback

    # 64 anchors / 8 pairs = 8 steps per epoch: the crash at step 11 is in the second epoch,
    # after the checkpoint of step 10. Dropout on, so RNG state must be restored too.
    common = (
        "max_steps=14", "save_steps=5", "logging_steps=1", "eval_strategy=no", "load_best_model_at_end=false",
        "lora_dropout=0.1", "dataset_weights=[0.03125]",
    )
    full = DeQARecipe(make_config(*common, out=tmp_path / "full"))
    full.setup()
    full.train()
    curve = {e["step"]: e["loss"] for e in full.trainer.state.log_history if "loss" in e}

    class CrashAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 11:
                raise _Crash

    crashed = DeQARecipe(make_config(*common, out=tmp_path / "crashed"))
    crashed.setup()
    crashed.trainer.add_callback(CrashAt())
    with pytest.raises(_Crash):
        crashed.train()
    resumed = DeQARecipe(make_config(*common, "resume_from_checkpoint=latest", out=tmp_path / "crashed"))
    resumed.setup()
    resumed.train()
    again = {e["step"]: e["loss"] for e in resumed.trainer.state.log_history if "loss" in e}
    assert sorted(again) == list(range(1, 15))  # steps 1..10 come from the checkpoint's state
    for step in range(11, 15):
        assert again[step] == pytest.approx(curve[step], rel=1e-5), f"step {step}"


def test_resume_latest_without_checkpoint_is_an_error(make_config, tmp_path):
    recipe = DeQARecipe(make_config("resume_from_checkpoint=latest", "eval_strategy=no", "load_best_model_at_end=false"))
    with pytest.raises(FileNotFoundError, match="no checkpoint-\\* folder"):
        recipe.setup()


def test_resume_with_settings_that_reshape_the_weights_is_refused_before_anything_is_written(make_config, tmp_path):
    import yaml

    from deqa.training.config import RESOLVED_CONFIG_NAME

    out = tmp_path / "run"
    ckpt = out / "checkpoint-4"
    ckpt.mkdir(parents=True)
    trained = make_config("lora_r=16", out=out)
    (ckpt / RESOLVED_CONFIG_NAME).write_text(yaml.safe_dump(trained.to_flat_dict() | {"output_dir": str(out)}))
    (out / RESOLVED_CONFIG_NAME).write_text("# the run's own record\n")
    recipe = DeQARecipe(make_config("lora_r=8", "resume_from_checkpoint=latest", out=out))
    with pytest.raises(ValueError, match=r"checkpoint-4: it was trained with other settings .*lora_r: 16 there, 8 now"):
        recipe.setup()
    assert (out / RESOLVED_CONFIG_NAME).read_text() == "# the run's own record\n"


def test_cli_reports_config_errors(tmp_path, capsys):
    from deqa.cli.train import main

    assert main(["--config", str(TINY), "lerning_rate=1"]) == 1
    err = capsys.readouterr().err
    assert "deqa-train:" in err and "'lerning_rate'" in err and "learning_rate" in err


def test_cli_reports_missing_inputs_without_a_traceback(tmp_path, capsys):
    from deqa.cli.train import main

    missing = tmp_path / "none.jsonl"
    assert main(["--config", str(TINY), f"train_manifests=[{missing}]", f"output_dir={tmp_path}"]) == 1
    assert capsys.readouterr().err.strip() == f"deqa-train: error: manifest not found: {missing}"
    argv = ["--config", str(TINY), "resume_from_checkpoint=latest", f"output_dir={tmp_path}"]
    assert main(argv) == 1
    assert f"no checkpoint-* folder in {tmp_path}" in capsys.readouterr().err
