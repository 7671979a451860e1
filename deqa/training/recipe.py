"""The ``deqa-train`` recipe: config -> build -> train -> save. Every step is a method so that
tests, notebooks and benchmarks can run the same code piecewise.

    recipe = DeQARecipe(load_train_config("configs/train/tiny_cpu.yaml"))
    recipe.setup()      # model + adapters, data sets, collator, DeQATrainer
    recipe.train()      # Trainer.train (resumes when resume_from_checkpoint is set)
    recipe.cleanup()    # final adapter/model + processor + deqa_config.json in output_dir
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from .config import RESOLVED_CONFIG_NAME, TrainConfig, _plain, save_resolved_config

__all__ = ["DeQARecipe", "resolve_checkpoint", "check_resume_matches"]

logger = logging.getLogger(__name__)


def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """``resume_from_checkpoint``: a path, or "latest"/"true" = the newest checkpoint in output_dir."""
    if value is None or str(value).lower() in ("false", "no", ""):
        return None
    if str(value).lower() in ("latest", "last", "true", "yes"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint={value!r}: no checkpoint-* folder in {output_dir}"
            )
        return last
    if not os.path.isdir(value):
        raise FileNotFoundError(f"resume_from_checkpoint: {value} is not a checkpoint folder")
    return value


# The settings that shape a checkpoint's weights (and its optimizer state): a resume with other
# values cannot load them.
SHAPE_KEYS = ("model_name_or_path", "tuning", "lora_r", "lora_target_modules", "train_vision_tower", "train_projector",
              "level_words")


def check_resume_matches(config: TrainConfig, checkpoint: str | None) -> None:
    """Refuse to resume ``checkpoint`` with settings that change its weights' shapes, before
    anything is loaded or written (the checkpoint's own ``deqa_train_config.yaml`` says how it
    was trained; a checkpoint without one is not checked)."""
    if checkpoint is None:
        return
    saved_path = Path(checkpoint) / RESOLVED_CONFIG_NAME
    if not saved_path.is_file():
        return
    try:
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return
    now = config.to_flat_dict()
    changed = [k for k in SHAPE_KEYS if k in saved and k in now and _plain(now[k]) != saved[k]]
    if changed:
        detail = "; ".join(f"{k}: {saved[k]!r} there, {_plain(now[k])!r} now" for k in changed)
        raise ValueError(
            f"resume_from_checkpoint {checkpoint}: it was trained with other settings that shape its weights ({detail}); "
            "resume with the checkpoint's settings, or start a new output_dir"
        )


class DeQARecipe:
    """One training run from a :class:`~deqa.training.config.TrainConfig`."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.trainer = None
        self.built = None
        self.checkpoint: str | None = None  # what train() resumes from, resolved once by setup()

    def setup(self) -> None:
        """Seed, build data and the collator, load and adapt the model, build the trainer; save
        the resolved config.

        Everything that can be checked without the weights is checked first, in this order: the
        manifests and their images, the pairs the fidelity loss needs, the processor and level
        tokens, one batch of each data set (so a prompt over max_length fails naming the image),
        then the model's module names; only then do the weights load.
        """
        from transformers import set_seed

        from .collator import DeQACollator
        from .data import build_eval_dataset, build_train_dataset
        from .model import load_training_model, load_training_prompt
        from .trainer import DeQATrainer

        cfg = self.config
        args = cfg.training
        # First of all: a resume whose settings do not fit the checkpoint must not get as far as
        # overwriting output_dir's deqa_train_config.yaml.
        self.checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
        check_resume_matches(cfg, self.checkpoint)
        set_seed(args.seed)
        data = cfg.data
        train = build_train_dataset(
            data.train_manifests,
            image_roots=[data.image_root_for(i) for i in range(len(data.train_manifests))],
            weights=data.dataset_weights,
            split=data.train_split,
            label_method=data.label_method,
        )
        # The sampler checks that every data set can be paired (two images at least); the
        # Trainer would build it only at the first step, after the weights have loaded.
        train.sampler(seed=args.seed, pairs=args.fidelity_weight > 0)
        evaluation = None
        if data.eval_manifest is not None:
            evaluation = build_eval_dataset(
                data.eval_manifest,
                image_root=data.eval_image_root,
                split=data.eval_split,
                max_samples=data.eval_max_samples,
                label_method=data.label_method,  # eval_loss measures the training objective
            )
        device_index = None
        if cfg.lora.tuning == "qlora" and not args.use_cpu:
            import torch

            device_index = args.local_process_index if torch.cuda.is_available() else None
            if device_index is None and args.should_log:
                logger.warning("tuning=qlora without a GPU: the 4-bit model is built and trained on the CPU "
                               "(slow; set use_cpu: true to say that is intended)")
        extras = {
            # what deqa-eval reports as the model's training data
            "training_data": ", ".join(dict.fromkeys(train.samples[g[0]].dataset for g in train.groups)),
            "train_manifests": list(data.train_manifests),
            "tuning": cfg.lora.tuning,
            "lora_r": cfg.lora.lora_r if cfg.lora.tuning != "full" else None,
        }
        prompt = load_training_prompt(cfg.model, label_method=data.label_method, extras=extras)
        collator = DeQACollator(
            prompt.processor, prompt.deqa_config, prompt.level_token_ids, max_length=data.max_length
        )
        _check_one_batch_each(collator, train, evaluation)
        self.built = load_training_model(cfg.model, cfg.lora, device_index=device_index, prompt=prompt)
        resolved = yaml.safe_dump(_plain(cfg.to_flat_dict()), sort_keys=False, allow_unicode=True)
        if args.should_save:
            save_resolved_config(cfg, args.output_dir)
        self.trainer = DeQATrainer(
            model=self.built.model,
            args=args,
            train_dataset=train,
            eval_dataset=evaluation,
            data_collator=collator,
            processing_class=self.built.processor,
            level_token_ids=self.built.level_token_ids,
            deqa_config=self.built.deqa_config,
            resolved_config=f"# deqa-train resolved config (from {cfg.source})\n" + resolved,
        )
        if args.should_log:
            logger.info("training %s", _trainable_summary(self.built.model))

    def train(self):
        """Run Trainer.train; returns its TrainOutput."""
        if self.trainer is None:
            raise RuntimeError("call setup() before train()")
        return self.trainer.train(resume_from_checkpoint=self.checkpoint)

    def cleanup(self) -> Path:
        """Save the final (or, with load_best_model_at_end, the best) model into output_dir."""
        out = Path(self.config.training.output_dir)
        self.trainer.save_model(str(out))
        self.trainer.save_state()
        self.trainer.accelerator.wait_for_everyone()
        return out


def _check_one_batch_each(collator, train, evaluation) -> None:
    """Collate the first image of every training data set and of the validation set. A prompt
    that cannot fit max_length (its length is known from the processor alone), an unreadable
    first image or soft labels of the wrong size then fail before the weights load, not at the
    first step; a later image that fails stops training with the same one-line error."""
    items = [train[group[0]] for group in train.groups]
    if evaluation is not None and len(evaluation):
        items.append(evaluation[0])
    for item in items:
        collator([item])


def _trainable_summary(model) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)"
