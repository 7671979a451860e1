"""Fine-tuning a degradation model's encoder branch end to end: trunk and MLP, on rendered images.

:mod:`.branch_train` fits the branch's MLP on the frozen ImageNet trunk's pooled features. Those
features were learnt for naming objects, not for judging a colour cast or an exposure, and the
frozen branch is the part of the model that carries over to unseen scenes. Fine-tuning lets the
trunk's later blocks re-weight what they measure for these six questions while starting from a
million photographs' worth of features instead of the CNN's ~200 scenes.

What trains: the blocks from ``frozen_blocks`` on and the MLP. The stem and the first blocks stay
as they are: they run at 112 and 56 px, where a backward pass costs the most, and they are the
generic edge and colour filters every later block builds on. Batch-norm statistics stay frozen
(:class:`~.encoder_branch.EncoderBranch` keeps its trunk in eval mode while the MLP's dropout
trains); the affine parameters of the trained blocks train. The feature standardisation of the
source branch is kept. The loss is the branch's own per-head BCE (the CNN's loss weights);
afterwards the trunk is rounded to float16, as it is stored, and the blend with the (unchanged)
CNN is chosen again on validation data exactly as :func:`~.branch_train.train_branch` does.
Measured on the built-in model's build (1 epoch, 60,000 crops): no gain on unseen scenes, so the
built-in model does not use it (BENCHMARKS.md).

A run checkpoints every ``checkpoint_every`` steps (``finetune_state.pt``: weights, optimiser,
schedule, step, running loss, torch's RNG; written atomically) and resumes from it when the same
command is repeated on the same source weights (their digests are in ``finetune_config.json``; a
run stopped before its first checkpoint starts over). Batches and flips are functions of (seed,
epoch, step), so a resumed run on the same number of threads trains, bit for bit, what the
uninterrupted one would have (the convolutions' float sums depend on the thread count).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write, file_digest, write_text_atomic
from .branch_train import blend_on_validation, check_rendered, sweep_sets
from .degradation import load_degradation_model, model_watermark_ink, save_degradation_model
from .degradation_config import BRANCH_WEIGHTS_NAME, WEIGHTS_NAME
from .degradation_train import _schedule, head_loss, usable_device
from .dictconfig import from_dict_strict
from .encoder_branch import TRUNK_DTYPE, BranchedDegradationNet
from .synth import load_synth_dataset

__all__ = ["BranchFinetuneConfig", "finetune_branch"]

STATE_NAME = "finetune_state.pt"
LOG_NAME = "finetune_log.jsonl"


@dataclass
class BranchFinetuneConfig:
    """One fine-tuning run; saved as ``finetune_config.json`` in the output folder."""

    model: str  # a degradation-model folder with an encoder branch (`deqa baseline branch-train`)
    train_data: list[str]
    val_data: str
    out_dir: str
    val_sweeps: list[str] = field(default_factory=list)  # as for branch-train: the blend is chosen on them
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    frozen_blocks: int = 3  # the stem and blocks [0, frozen_blocks) keep their weights
    loss_weights: dict[str, float] = field(default_factory=lambda: {"watermark": 1.5})
    augment: bool = True  # horizontal flips, as the CNN trains
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 50
    num_threads: int | None = None
    device: str = "cpu"
    feature_batch_size: int = 64
    model_id: str | None = None  # default: the source model's

    def __post_init__(self) -> None:
        if isinstance(self.train_data, str):
            self.train_data = [self.train_data]
        if not self.train_data:
            raise ValueError("branch fine-tuning: train_data names no rendered set")
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "feature_batch_size", "frozen_blocks",
                     "warmup_steps", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"branch fine-tuning: {name} must be a whole number, got {value!r}")
        for name in ("lr", "weight_decay", "min_lr_ratio", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"branch fine-tuning: {name} must be a number, got {value!r}")
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "feature_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"branch fine-tuning: {name} must be >= 1, got {getattr(self, name)}")
        if self.frozen_blocks < 0:
            raise ValueError(f"branch fine-tuning: frozen_blocks must be >= 0, got {self.frozen_blocks}")
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 < self.min_lr_ratio <= 1 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise ValueError("branch fine-tuning: lr and grad_clip must be > 0, weight_decay and warmup_steps >= 0 and "
                             "min_lr_ratio in (0, 1]")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BranchFinetuneConfig:
        return from_dict_strict(cls, d, "branch fine-tuning config")


# Settings that say where and how fast a run goes, not what it trains: a resume may change them.
_RESUME_FREE = ("num_threads", "device", "feature_batch_size", "log_every")


def _batch(sets: list[tuple[np.ndarray, np.ndarray]], offsets: np.ndarray, idx: np.ndarray, augment: bool,
           rng: np.random.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [B, 3, S, S] in [0, 1] and labels of global indices ``idx`` over several sets."""
    idx = np.sort(idx)  # sorted reads of the memory-mapped images
    which = np.searchsorted(offsets, idx, side="right") - 1
    xs, ys = [], []
    for k in np.unique(which):
        local = idx[which == k] - offsets[k]
        xs.append(np.asarray(sets[k][0][local]))
        ys.append(sets[k][1][local])
    x = torch.from_numpy(np.concatenate(xs)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if augment:
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    return x.contiguous(), torch.from_numpy(np.concatenate(ys)).to(device)


def finetune_branch(cfg: BranchFinetuneConfig, *, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``cfg.model``'s branch, blend it again, write the model to ``cfg.out_dir``."""
    from tqdm.auto import tqdm

    out = Path(cfg.out_dir)
    source = load_degradation_model(cfg.model)
    if not isinstance(source, BranchedDegradationNet):
        raise ValueError(f"{cfg.model}: a CNN without an encoder branch; add one first with `deqa baseline branch-train`")
    cnn, branch = source.cnn, source.branch
    heads = cnn.cfg.heads
    n_blocks = len(branch.trunk._blocks)
    if cfg.frozen_blocks >= n_blocks:
        raise ValueError(f"branch fine-tuning: frozen_blocks {cfg.frozen_blocks} leaves no block to train: this trunk has "
                         f"{n_blocks} blocks (0-{n_blocks - 1}), up to its last tap")
    device = usable_device(cfg.device, "branch fine-tuning")
    unknown = sorted(set(cfg.loss_weights) - set(heads))
    if unknown:
        raise ValueError(f"branch fine-tuning: loss_weights names {unknown}, which are not heads {list(heads)}")
    ink = model_watermark_ink(cfg.model)  # carried into the output with the source's other entries
    sweeps = sweep_sets(cfg.val_sweeps, heads, cnn.cfg.image_size, ink)
    sets = []
    for path in [*cfg.train_data, cfg.val_data]:
        images, labels, meta = load_synth_dataset(path)
        check_rendered(path, images, meta, heads, cnn.cfg.image_size, ink)
        sets.append((images, labels))
    val_images, val_labels = sets.pop()
    # The source's weights by digest: a resume must continue from the model it started from (a
    # folder retrained in place under the same path is another model).
    # Paths resolved: `--out x` and `--out ./x` are one run.
    resolved = {"model": str(Path(cfg.model).resolve()), "train_data": [str(Path(d).resolve()) for d in cfg.train_data],
                "val_data": str(Path(cfg.val_data).resolve()), "val_sweeps": [str(Path(d).resolve()) for d in cfg.val_sweeps],
                "out_dir": str(out.resolve())}
    run_config = {**asdict(cfg), **resolved, "source_weights": {name: file_digest(Path(cfg.model) / name)
                                                                for name in (WEIGHTS_NAME, BRANCH_WEIGHTS_NAME)}}
    state_path, config_path = out / STATE_NAME, out / "finetune_config.json"
    resuming = state_path.is_file()
    if config_path.is_file():
        old = json.loads(config_path.read_text())
        diffs = [k for k in run_config if k not in _RESUME_FREE and old.get(k) != run_config[k]]
        if diffs:
            raise ValueError(f"--out {out} holds a fine-tuning run with other settings ({', '.join(diffs)}); repeat its "
                             "command to continue it, or choose a new --out")
    elif resuming or (out.exists() and any(out.iterdir())):
        raise ValueError(f"--out {out} is not empty and holds no fine-tuning run; choose a new --out")

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    branch.trunk.float()  # stored in float16; trained in float32
    trained = [p for b in branch.trunk._blocks[cfg.frozen_blocks:] for p in b.parameters()] + list(branch.head.parameters())
    for p in branch.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    branch.to(device)
    loss_w = torch.tensor([cfg.loss_weights.get(h, 1.0) for h in heads], device=device)
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    offsets = np.cumsum([0] + [len(s[0]) for s in sets])
    n = int(offsets[-1])
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    sched = _schedule(opt, cfg, steps_per_epoch * cfg.epochs)
    state: dict[str, Any] = {"step": 0, "best_val": float("inf"), "best_epoch": 0, "history": []}
    out.mkdir(parents=True, exist_ok=True)
    if resuming:
        # Our own file (below); weights_only keeps unpickling to tensors and primitives.
        ckpt = torch.load(state_path, map_location=device, weights_only=True)
        branch.load_state_dict(ckpt["branch"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all([t.cpu() for t in ckpt["cuda_rng"]])
        state = json.loads(ckpt["state"])
        print(f"resuming from {state_path} at step {state['step']}")
    else:
        write_text_atomic(config_path, json.dumps(run_config, indent=2) + "\n")

    def checkpoint() -> None:
        with atomic_write(state_path, "wb") as f:  # a kill mid-save keeps the previous checkpoint
            torch.save({"branch": branch.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "torch_rng": torch.get_rng_state(), "state": json.dumps(state),
                        "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}, f)

    def validate() -> float:
        total = 0.0
        branch.eval()
        with torch.no_grad():
            for s in range(0, len(val_images), cfg.feature_batch_size):
                x = torch.from_numpy(np.array(val_images[s : s + cfg.feature_batch_size])).to(device)
                x = x.permute(0, 3, 1, 2).float().div_(255.0)
                y = torch.from_numpy(val_labels[s : s + len(x)]).to(device)
                total += head_loss(branch(x), y, loss_w).item() * len(x)
        branch.train()
        return total / len(val_images)

    with atomic_write(out / LOG_NAME) as f:  # a resumed run keeps the rows up to its checkpoint
        f.writelines(json.dumps(row) + "\n" for row in state["history"])
    log = open(out / LOG_NAME, "a")
    t0 = time.perf_counter()
    branch.train()  # the MLP's dropout; the trunk's batch-norm statistics stay frozen (EncoderBranch.train)
    try:
        step = state["step"]
        bar = tqdm(total=steps_per_epoch * cfg.epochs, initial=step, disable=not progress, desc="fine-tune")
        running = state.get("running")  # the logged loss's running mean goes on where the checkpoint left it
        while step < steps_per_epoch * cfg.epochs:
            epoch, b = divmod(step, steps_per_epoch)
            order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x, y = _batch(sets, offsets, idx, cfg.augment, np.random.default_rng([cfg.seed, epoch, b]), device)
            loss = head_loss(branch.head_logits(branch.pooled(x, grad_from=cfg.frozen_blocks)), y, loss_w)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr (now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip))
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
            row = None
            if step % cfg.log_every == 0:
                row = {"step": step, "train_loss": round(running, 5), "grad_norm": round(grad_norm, 4),
                       "lr": sched.get_last_lr()[0], "seconds_this_call": round(time.perf_counter() - t0, 1)}
            if step % steps_per_epoch == 0:
                val = validate()
                row = {**(row or {"step": step, "train_loss": round(running, 5)}), "epoch": step // steps_per_epoch,
                       "val_loss": round(val, 5), "best": val < state["best_val"]}
                if val < state["best_val"]:
                    state.update(best_val=val, best_epoch=step // steps_per_epoch)
                    with atomic_write(out / "best_branch.pt", "wb") as f:
                        torch.save(branch.state_dict(), f)
            if row is not None:
                print(json.dumps(row), flush=True)
                log.write(json.dumps(row) + "\n")
                log.flush()
                state["history"].append(row)
            state.update(step=step, running=running)
            if step % cfg.checkpoint_every == 0 or step % steps_per_epoch == 0:
                checkpoint()
        bar.close()
    finally:
        log.close()

    branch.load_state_dict(torch.load(out / "best_branch.pt", map_location=device, weights_only=True))
    # The trunk as it will be stored: the blend is chosen on the weights both runtimes read.
    branch.trunk.to(TRUNK_DTYPE).float()
    for p in branch.parameters():
        p.requires_grad_(False)
    branch.eval()
    mix, mix_info = blend_on_validation(cnn.to(device), branch, cfg.val_data, sweeps, device=cfg.device,
                                        batch_size=cfg.feature_batch_size, progress=progress)
    branch.cfg = type(branch.cfg).from_dict({**branch.cfg.to_dict(), "mix": mix})
    model = BranchedDegradationNet(cnn.cpu(), branch.cpu()).eval()
    # The source's other settings (its model id, its full-resolution "views") describe how the model
    # is read, which fine-tuning does not change; "branch_finetune" says that the trunk is no longer ImageNet's.
    source_cfg = json.loads((Path(cfg.model) / "deqa_baseline.json").read_text())
    extra = {k: v for k, v in source_cfg.items() if k not in ("type", "format_version", "model", "branch")}
    extra["model_id"] = cfg.model_id or source_cfg.get("model_id", "deqa-degradation")
    extra["branch_finetune"] = {"trained_from_block": cfg.frozen_blocks, "epochs": cfg.epochs, "n_train": n,
                                "best_epoch": state["best_epoch"]}
    save_degradation_model(model, out, extra=extra)
    summary = {"best_val_loss": round(state["best_val"], 5), "best_epoch": state["best_epoch"], "mix": mix,
               "mix_choice": mix_info, "seconds_this_call": round(time.perf_counter() - t0, 1), "n_train": n}
    with open(out / LOG_NAME, "a") as f:
        f.write(json.dumps(summary) + "\n")
    return summary
