"""Every shipped config loads and validates; YAML + CLI parsing of deqa-train's typed arguments."""

import json
from pathlib import Path

import pytest

from deqa.training.config import (
    DEFAULT_LORA_TARGETS,
    RESOLVED_CONFIG_NAME,
    ConfigError,
    load_train_config,
    parse_overrides,
    save_resolved_config,
)

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = sorted((ROOT / "configs" / "train").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
DEEPSPEED_CONFIGS = sorted((ROOT / "configs" / "deepspeed").glob("*.json"))

MINIMAL = "model_name_or_path: some/model\ntrain_manifests: [a.jsonl]\noutput_dir: {out}\n"


def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text.format(out=tmp_path / "out"))
    return path


def test_the_shipped_configs_are_there():
    names = {p.stem for p in TRAIN_CONFIGS}
    assert {
        "qwen2_5_vl_7b_koniq",
        "qwen2_5_vl_7b_mix3",
        "qwen2_5_vl_3b_koniq",
        "qwen2_5_vl_3b_mix3",
        "internvl3_8b_koniq",
        "qwen2_5_vl_7b_koniq_qlora",
        "tiny_cpu",
    } <= names
    assert {p.stem for p in ACCELERATE_CONFIGS} >= {
        "single_gpu",
        "multi_gpu_ddp",
        "deepspeed_zero2",
        "deepspeed_zero3",
        "deepspeed_zero3_offload",
        "multi_node_example",
        "cpu",
    }


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_every_train_config_validates(path):
    # use_cpu: bf16 configs are checked on this GPU-less machine through CPU autocast.
    cfg = load_train_config(path, ["use_cpu=true"])
    assert cfg.training.output_dir
    assert cfg.training.remove_unused_columns is False
    if path.stem != "tiny_cpu":  # the DeQA recipe
        lora, t = cfg.lora, cfg.training
        assert (lora.lora_r, lora.lora_alpha) == (128, 256)
        assert t.learning_rate == 2e-5 and t.num_train_epochs == 3 and t.warmup_steps == 0.03
        assert t.lr_scheduler_type.value == "cosine" and t.bf16 and t.activation_checkpointing
        assert (t.ce_weight, t.kl_weight, t.fidelity_weight) == (0.05, 0.05, 1.0)
        assert cfg.data.eval_manifest and t.load_best_model_at_end
    if "mix3" in path.stem:
        assert len(cfg.data.train_manifests) == 3 == len(cfg.data.image_roots)
    if "qlora" in path.stem:
        assert cfg.lora.tuning == "qlora" and cfg.lora.bnb_4bit_quant_type == "nf4"


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.stem)
def test_every_accelerate_config_loads_with_accelerate(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(path))  # accelerate's own loader: unknown keys fail
    ds_file = (cfg.deepspeed_config or {}).get("deepspeed_config_file")
    if ds_file:
        assert (ROOT / ds_file).is_file(), f"{path.name} points to missing {ds_file}"


@pytest.mark.parametrize("path", DEEPSPEED_CONFIGS, ids=lambda p: p.stem)
def test_every_deepspeed_config_is_valid_json_with_auto_batch(path):
    cfg = json.loads(path.read_text())
    assert cfg["zero_optimization"]["stage"] in (2, 3)
    # the Trainer fills the batch sizes from the training config
    assert cfg["train_micro_batch_size_per_gpu"] == "auto"
    if "offload" in path.stem:
        assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_yaml_strings_are_converted_and_overrides_win(tmp_path):
    path = _write(tmp_path, MINIMAL + "learning_rate: 2e-5\nlora_r: 8\n")  # '2e-5' is a YAML string
    cfg = load_train_config(path)
    assert cfg.training.learning_rate == 2e-5 and isinstance(cfg.training.learning_rate, float)
    cfg = load_train_config(
        path,
        [
            "lora_r=4",
            "--learning_rate",
            "1e-4",
            "--num_train_epochs=2",
            "image_roots=[r1]",
            "--dataset_weights",
            "0.5",
            "fidelity_std=null",
            "--bf16",
            "false",
            "processor_kwargs={max_pixels: 3136}",
            "--question",
            "rate=this?",
        ],
    )
    assert cfg.lora.lora_r == 4
    assert cfg.training.learning_rate == 1e-4 and cfg.training.num_train_epochs == 2
    assert cfg.data.image_roots == ["r1"] and cfg.data.dataset_weights == [0.5]
    assert cfg.training.fidelity_std is None and cfg.training.bf16 is False
    assert cfg.model.processor_kwargs == {"max_pixels": 3136}
    assert cfg.model.question == "rate=this?"  # a value after --key may contain '='
    assert cfg.lora.lora_target_modules == DEFAULT_LORA_TARGETS


def test_a_mapping_override_takes_yaml_like_the_config_files(tmp_path):
    path = _write(tmp_path, MINIMAL)
    cfg = load_train_config(path, ["activation_checkpointing_kwargs={use_reentrant: false}"])
    assert cfg.training.activation_checkpointing_kwargs == {"use_reentrant": False}
    with pytest.raises(ConfigError, match="override 'activation_checkpointing_kwargs={a: \\[}': not a mapping"):
        load_train_config(path, ["activation_checkpointing_kwargs={a: [}"])
    with pytest.raises(ConfigError, match="c.yaml with the command-line overrides: .*warmup_steps"):
        load_train_config(path, ["warmup_steps=-1"])


def test_parse_overrides_forms():
    assert parse_overrides(["a=1", "--b", "2", "--c=3", "d=[x, y]", "--e", "f", "g"]) == [
        "--a", "1", "--b", "2", "--c", "3", "--d", "x", "y", "--e", "f", "g",
    ]


def test_unknown_key_in_yaml_names_key_file_and_suggestion(tmp_path):
    path = _write(tmp_path, MINIMAL + "lerning_rate: 1e-4\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    msg = str(err.value)
    assert "'lerning_rate'" in msg and str(path) in msg and "did you mean 'learning_rate'" in msg


def test_unknown_key_on_the_command_line(tmp_path):
    path = _write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="'lora_rank' in the command-line overrides.*'lora_r'"):
        load_train_config(path, ["lora_rank=8"])
    with pytest.raises(ConfigError, match="'learn'"):  # no abbreviations
        load_train_config(path, ["--learn", "1"])
    with pytest.raises(ConfigError, match="lora_r.*invalid int value: 'abc'"):
        load_train_config(path, ["--lora_r", "abc"])
    with pytest.raises(ConfigError, match="invalid choice"):
        load_train_config(path, ["tuning=dora"])


@pytest.mark.parametrize(
    "extra, match",
    [
        ("", None),
        ("image_roots: [a, b]\n", "image_roots has 2 entries for 1 train_manifests"),
        ("dataset_weights: [0]\n", "dataset_weights must be finite and > 0"),
        ("lora_dropout: 1.5\n", "lora_dropout"),
        ("lora_target_modules: '(unclosed'\n", "not a valid regex"),
        ("kl_weight: -1\n", "kl_weight must be finite and >= 0"),
        ("ce_weight: 0\nkl_weight: 0\nfidelity_weight: 0\n", "nothing to train"),
        ("remove_unused_columns: true\n", "remove_unused_columns must be false"),
        ("eval_strategy: steps\n", "needs eval_manifest"),
        ("tuning: full\ntrain_vision_tower: true\n", "already trains every weight"),
        ("level_words: [a, b]\n", "level_words needs 5 words"),
        ("processor_kwargs: '[1, 2]'\n", "processor_kwargs must be a mapping"),
        # accepted by TrainingArguments, then a traceback once the model had loaded
        ("per_device_train_batch_size: 0\n", "per_device_train_batch_size must be >= 1, got 0"),
        ("per_device_eval_batch_size: 0\n", "per_device_eval_batch_size must be >= 1, got 0"),
        ("gradient_accumulation_steps: 0\n", "gradient_accumulation_steps must be >= 1, got 0"),
        ("dataloader_num_workers: -1\n", "dataloader_num_workers must be >= 0, got -1"),
        ("seed: -1\n", "seed must be >= 0, got -1"),
        ("learning_rate: -1.0e-4\n", "learning_rate must be finite and >= 0"),
        ("weight_decay: -0.1\n", "weight_decay must be finite and >= 0"),
        ("save_steps: -10\n", "save_steps must be >= 0"),
        ("num_train_epochs: 0\n", "max_steps=-1 means 'train num_train_epochs epochs', but num_train_epochs is 0"),
        # a typo failed with a KeyError at the first evaluation, after the weights had loaded
        ("metric_for_best_model: srrc\n", "metric_for_best_model 'srrc' is not a validation metric; choose one of"),
        # the shape of a value: a string iterated as a list, a list where one value belongs
        ("image_roots: data/images\n", "key 'image_roots' takes a list, e.g. image_roots: \\[data/images\\]"),
        ("dataset_weights: 1.0\n", "key 'dataset_weights' takes a list"),
        ("lora_r: [1, 2]\n", "key 'lora_r' takes one value, got the list"),
        ("eval_strategy: no\n", "key 'eval_strategy': YAML reads an unquoted yes/no/on/off as False; quote the value"),
    ],
)
def test_cross_field_checks(tmp_path, extra, match):
    path = _write(tmp_path, MINIMAL + extra)
    if match is None:
        load_train_config(path)
        return
    with pytest.raises(ConfigError, match=match):
        load_train_config(path)


def test_a_string_train_manifests_is_a_list_error_not_a_missing_slash(tmp_path):
    with pytest.raises(ConfigError, match="key 'train_manifests' takes a list"):
        load_train_config(_write(tmp_path, "model_name_or_path: m\ntrain_manifests: a.jsonl\noutput_dir: {out}\n"))


@pytest.mark.parametrize("metric, given, expected", [
    ("srcc", None, True), ("eval_plcc", None, True), ("mae", None, False), ("rmse", None, False),
    ("loss", None, False), ("mae", "true", True),  # an explicit choice stands
])  # fmt: skip
def test_best_model_direction_follows_the_metric(tmp_path, metric, given, expected):
    extra = f"metric_for_best_model: {metric}\n" + (f"greater_is_better: {given}\n" if given else "")
    assert load_train_config(_write(tmp_path, MINIMAL + extra)).training.greater_is_better is expected


def test_the_metric_names_are_what_validation_reports():
    import numpy as np
    from transformers import EvalPrediction

    from deqa.training.config import EVAL_METRICS
    from deqa.training.trainer import compute_quality_metrics

    probs = np.random.default_rng(0).dirichlet(np.ones(5), 8)
    reported = compute_quality_metrics(EvalPrediction(predictions=probs, label_ids=np.column_stack([np.linspace(1, 5, 8), np.ones(8)])))
    assert set(reported) | {"loss", "loss_ce", "loss_kl", "loss_fidelity"} == EVAL_METRICS


def test_missing_required_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="model_name_or_path is required"):
        load_train_config(_write(tmp_path, "train_manifests: [a.jsonl]\n"))
    with pytest.raises(ConfigError, match="train_manifests is required"):
        load_train_config(_write(tmp_path, "model_name_or_path: m\n"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_train_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(_write(tmp_path, "a: [\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_train_config(_write(tmp_path, MINIMAL), ["lora_r=4", "fidelity_std=null", "hub_token=secret"])
    path = save_resolved_config(cfg, tmp_path / "run")
    assert path.name == RESOLVED_CONFIG_NAME
    assert "secret" not in path.read_text()  # tokens are never written next to checkpoints
    again = load_train_config(path)
    assert again.to_flat_dict() == {**cfg.to_flat_dict()}
    assert again.lora.lora_r == 4 and again.training.fidelity_std is None


def test_a_deprecated_alias_on_the_command_line_wins_over_a_saved_config(tmp_path):
    """The saved config holds the new names only; gradient_checkpointing=true on the command line
    turns checkpointing on (it used to be ignored beside the file's activation_checkpointing: false)."""
    cfg = load_train_config(_write(tmp_path, MINIMAL + "activation_checkpointing: false\n"))
    path = save_resolved_config(cfg, tmp_path / "run")
    text = path.read_text()
    assert "activation_checkpointing: false" in text and "gradient_checkpointing" not in text
    again = load_train_config(path, ["gradient_checkpointing=true", 'gradient_checkpointing_kwargs={"use_reentrant": false}'])
    assert again.training.activation_checkpointing is True
    assert again.training.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert load_train_config(path).training.activation_checkpointing is False


def test_keys_this_tuning_never_reads_are_named(tmp_path, capsys, recwarn):
    from deqa.cli.train import _parse
    from deqa.training.config import ConfigWarning

    path = _write(tmp_path, MINIMAL)
    _parse(["--config", str(path), "tuning=full", "bnb_4bit_quant_type=fp4", "lora_r=8"])
    err = capsys.readouterr().err
    assert "deqa-train: warning: bnb_4bit_quant_type, lora_r set but unused with tuning=full" in err
    # A resolved config lists every key at its value: the defaults are not "set".
    saved = save_resolved_config(load_train_config(path, ["tuning=full"]), tmp_path / "run")
    recwarn.clear()
    load_train_config(saved)
    assert not [w for w in recwarn if issubclass(w.category, ConfigWarning)]
    with pytest.raises(ConfigError, match="label_smoothing_factor has no effect"):
        load_train_config(path, ["label_smoothing_factor=0.1"])
