"""Training the encoder branch of a degradation model, on cached trunk features.

The trunk is frozen, so each rendered image's pooled features are computed once and cached
beside the set (``<set>/branch_features/<trunk id>.npy``, written chunk by chunk, resumable);
the MLP then trains on the cached matrix in seconds per epoch. After training, the branch's share
of every head's logit (``mix``) is chosen on validation data, on a 0.05 grid: with validation
*sweep sets* for a head (that head's intensity uniform in [0, 1], rendered from the training
scenes like the held-out protocol's sweeps are from the held-out ones), the share that grades that
head best (mean SRCC over its sweep sets, the quantity the goals are set on); without, the share
with the lowest BCE on the validation set. The result is one model folder holding both
(:func:`~deqa.baselines.degradation.save_degradation_model`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import file_digest, write_text_atomic
from .degradation import (
    DegradationNet,
    load_degradation_model,
    model_watermark_ink,
    save_degradation_model,
    watermark_ink_extra,
)
from .degradation_config import EncoderBranchConfig, mix_logits
from .degradation_train import _schedule, head_loss, predict_intensities, usable_device
from .dictconfig import from_dict_strict
from .encoder_branch import TRUNK_DTYPE, BranchedDegradationNet, EncoderBranch, imagenet_trunk_state
from .synth import load_synth_dataset, set_watermark_ink

__all__ = ["BranchTrainConfig", "blend_on_validation", "branch_features", "check_rendered", "choose_mix", "imagenet_branch",
           "sweep_sets", "train_branch", "trunk_id"]

MIX_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)


@dataclass
class BranchTrainConfig:
    """One encoder-branch run; saved as ``branch_train_config.json`` in the output folder."""

    cnn: str  # degradation-model folder whose CNN the branch is blended with (copied into out_dir)
    train_data: list[str]
    val_data: str
    out_dir: str
    # Validation sweep sets (``synth --split train --sweep HEAD``, with or without nuisance): the
    # mix of a head with sweep sets is chosen by its grading SRCC on them, else by validation BCE.
    val_sweeps: list[str] = field(default_factory=list)
    branch: dict[str, Any] = field(default_factory=dict)  # EncoderBranchConfig fields (mix is chosen here)
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.01
    loss_weights: dict[str, float] = field(default_factory=lambda: {"watermark": 1.5})
    seed: int = 0
    num_threads: int | None = None
    device: str = "cpu"
    feature_batch_size: int = 64
    model_id: str | None = None  # default: the CNN folder's model_id

    def __post_init__(self) -> None:
        if isinstance(self.train_data, str):
            self.train_data = [self.train_data]
        if not self.train_data:
            raise ValueError("branch training: train_data names no rendered set")
        for name in ("epochs", "batch_size", "feature_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"branch training: {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 < self.min_lr_ratio <= 1:
            raise ValueError("branch training: lr must be > 0, warmup_steps >= 0 and min_lr_ratio in (0, 1]")
        if "mix" in self.branch:
            raise ValueError("branch training: 'mix' is chosen on the validation set; leave it out of 'branch'")
        self.branch_config()  # validate the branch fields now

    def branch_config(self, mix: dict[str, float] | None = None) -> EncoderBranchConfig:
        return EncoderBranchConfig.from_dict({**self.branch, "mix": mix or {}})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BranchTrainConfig:
        return from_dict_strict(cls, d, "branch training config")


def imagenet_branch(bcfg: EncoderBranchConfig, n_heads: int, image_size: int) -> EncoderBranch:
    """A fresh branch whose trunk holds the ImageNet weights as shipped: rounded to float16
    (TRUNK_DTYPE), so the head trains on features of the same weights both runtimes use at
    inference."""
    branch = EncoderBranch(bcfg, n_heads, image_size)
    branch.trunk.load_state_dict({k: v.to(TRUNK_DTYPE).float() if v.is_floating_point() else v
                                  for k, v in imagenet_trunk_state(bcfg).items()})
    return branch


def images_digest(path: str | Path) -> str:
    """BLAKE2b of a file's bytes (a rendered set's images.npy), read in 16 MiB blocks."""
    return file_digest(path, "blake2b", digest_size=16, block_size=1 << 24)


def _stamped_digest(images_path: Path, stamp: dict) -> tuple[str, dict]:
    """The images' digest, read from ``stamp`` when the file is provably the one it was taken of.

    Hashing a 30,000-crop images.npy (4.5 GB) takes ~27 s, paid on every training call otherwise.
    As git's index does, the stamp keeps the file's size and mtime; when both still match, the
    digest is trusted without reading the file. A write landing in the same clock tick as the
    digest would keep the mtime, so a digest taken less than 2 s after the last write is not
    trusted (the file is hashed again next time and then, being older, its stat is).
    """
    st = images_path.stat()
    seen = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    old = stamp.get("file") or {}
    if ("images_blake2b" in stamp and old.get("size") == seen["size"] and old.get("mtime_ns") == seen["mtime_ns"]
            and old.get("hashed_ns", 0) - seen["mtime_ns"] >= 2_000_000_000):
        return stamp["images_blake2b"], old
    digest = images_digest(images_path)
    return digest, {**seen, "hashed_ns": time.time_ns()}


def trunk_id(branch: EncoderBranch) -> str:
    """Hash of the trunk's weights and taps: cached features are only reused under it."""
    h = hashlib.sha256(json.dumps({"encoder": branch.cfg.encoder, "taps": list(branch.cfg.taps)}).encode())
    for k, v in sorted(branch.trunk.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def branch_features(branch: EncoderBranch, data: str | Path, *, batch_size: int = 64, device: str = "cpu",
                    chunk: int = 1024, progress: bool = True) -> np.ndarray:
    """Pooled trunk features [N, dim] of a rendered set, cached in ``<data>/branch_features/``.

    Written chunk by chunk into a memory-mapped file with the count done beside it, so an
    interrupted run resumes; a finished cache is read back without running the trunk. The cache
    is keyed by the trunk (weights and taps) and stamped with a digest of the set's images: a set
    rendered again (other photo paths, another generator version) gets its features recomputed
    unless its images came out bit for bit the same.
    """
    from tqdm.auto import tqdm

    images, _, _ = load_synth_dataset(data)
    folder = Path(data) / "branch_features"
    folder.mkdir(exist_ok=True)
    tid = trunk_id(branch)
    path, done_path, stamp_path = folder / f"{tid}.npy", folder / f"{tid}.done", folder / f"{tid}.json"
    n = len(images)
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    digest, seen = _stamped_digest(Path(data) / "images.npy", stamp)
    fresh = stamp.get("images_blake2b") == digest
    done = int(done_path.read_text()) if fresh and done_path.is_file() and path.is_file() else 0
    if not fresh:
        # The old set's count goes before the new set's stamp is written: the other order, stopped
        # in between, left a stamp that matched with a count that did not (rows of zeros read back
        # as features).
        done_path.unlink(missing_ok=True)
    if not fresh or stamp.get("file") != seen:
        write_text_atomic(stamp_path, json.dumps({"images_blake2b": digest, "n": n, "file": seen}) + "\n")
    if done == 0:
        feats = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, branch.dim))
    else:
        feats = np.load(path, mmap_mode="r+")
        if feats.shape != (n, branch.dim):
            raise ValueError(f"{path}: cached features of shape {feats.shape}, expected {(n, branch.dim)}; delete it")
    branch = branch.to(device).eval()
    bar = tqdm(total=n, initial=done, disable=not progress or done >= n, unit="img", desc=f"features {Path(data).name}")
    for start in range(done, n, chunk):
        stop = min(start + chunk, n)
        for s in range(start, stop, batch_size):
            x = torch.from_numpy(np.array(images[s : min(s + batch_size, stop)])).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            feats[s : s + len(x)] = branch.features(x).cpu().numpy()
            bar.update(len(x))
        feats.flush()
        write_text_atomic(done_path, str(stop))
    bar.close()
    return np.asarray(feats)


def choose_mix(cnn_logits: np.ndarray, branch_logits: np.ndarray, labels: np.ndarray, heads: tuple[str, ...],
               sweeps: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] | None = None) -> tuple[dict[str, float], dict[str, dict]]:
    """Per head, the branch share on :data:`MIX_GRID` that the validation data prefers.

    ``cnn_logits``, ``branch_logits``, ``labels``: [N, H] on the validation set. ``sweeps``:
    head -> [(cnn logits, branch logits, labels) of each of its sweep sets]; for those heads the
    share with the highest mean grading SRCC over the sets wins (ties: the lower share), for the
    others the share with the lowest BCE on the validation set. Returns (mix, {head: {"by":
    "srcc" | "bce", "value": the criterion at the chosen share, "bce": validation BCE there}}).
    """
    from ..metrics import srcc

    sweeps = sweeps or {}
    mix, info = {}, {}
    y = torch.from_numpy(np.asarray(labels, np.float32))
    for j, h in enumerate(heads):
        bce = [
            F.binary_cross_entropy_with_logits(torch.from_numpy(mix_logits(cnn_logits[:, j], branch_logits[:, j], np.float32(m))), y[:, j]).item()
            for m in MIX_GRID
        ]
        if sweeps.get(h):
            # Ranks do not change under the sigmoid: SRCC of the blended logits is the grading SRCC.
            grade = [float(np.mean([srcc(mix_logits(c[:, j], b[:, j], m), lab[:, j]) for c, b, lab in sweeps[h]])) for m in MIX_GRID]
            best = int(np.argmax(grade))
            info[h] = {"by": "srcc", "value": round(grade[best], 4), "bce": round(bce[best], 5)}
        else:
            best = int(np.argmin(bce))
            info[h] = {"by": "bce", "value": round(bce[best], 5), "bce": round(bce[best], 5)}
        mix[h] = float(MIX_GRID[best])
    return mix, info


def check_rendered(path: str | Path, images: np.ndarray, meta: dict, heads: tuple[str, ...], size: int,
                   watermark_ink: bool = False) -> None:
    """A rendered set must label the model's heads in the model's order, at the size it reads, with
    the watermark labels (ink-matched or not) the model was trained on."""
    if set_watermark_ink(meta) != watermark_ink:
        raise ValueError(f"{path}: rendered {'with' if set_watermark_ink(meta) else 'without'} --watermark-ink but the model "
                         f"was trained {'with' if watermark_ink else 'without'} it; its watermark labels would mean another thing")
    if tuple(meta["config"]["heads"]) != tuple(heads):
        raise ValueError(f"{path}: heads {meta['config']['heads']} differ from the model's {list(heads)}")
    if images.shape[1] != size:
        raise ValueError(f"{path}: rendered at {images.shape[1]} px, the model reads {size} px")


def sweep_sets(paths: list[str], heads: tuple[str, ...], size: int, watermark_ink: bool = False) -> list[tuple[str, str]]:
    """(path, the head it sweeps) of each validation sweep set, read before any training work: a
    set that is not a sweep, or labels other heads or another size than the model's, fails here,
    not after the epochs (a sweep of other heads would grade a head on another head's labels)."""
    out = []
    for path in paths:
        images, _, meta = load_synth_dataset(path)
        head = meta["config"].get("sweep")
        if head is None:
            raise ValueError(f"{path}: not a sweep set (render it with `deqa baseline synth --split train --sweep HEAD`)")
        check_rendered(path, images, meta, heads, size, watermark_ink)
        out.append((path, head))
    return out


def blend_on_validation(cnn: DegradationNet, branch: EncoderBranch, val_data: str | Path, sweeps: list[tuple[str, str]], *,
                        device: str = "cpu", batch_size: int = 64, progress: bool = True) -> tuple[dict[str, float], dict[str, dict]]:
    """:func:`choose_mix` for a trained branch: CNN and branch logits on the validation set and on
    the sweep sets (``(path, head)`` from :func:`sweep_sets`); the branch's features come from the
    per-trunk cache (:func:`branch_features`)."""
    branch.eval()

    def logits(path):
        images, labels, _ = load_synth_dataset(path)
        feats = branch_features(branch, path, batch_size=batch_size, device=device, progress=progress)
        with torch.no_grad():
            b = branch.to(device).head_logits(torch.from_numpy(feats).to(device)).cpu().numpy()
        return _logits(predict_intensities(cnn, images, device=device)), b, labels

    cnn_val, branch_val, y_val = logits(val_data)
    by_head: dict[str, list] = {}
    for path, head in sweeps:
        by_head.setdefault(head, []).append(logits(path))
    return choose_mix(cnn_val, branch_val, y_val, cnn.cfg.heads, by_head)


def _logits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def fit_head(head: torch.nn.Module, logits: Callable[[torch.Tensor], torch.Tensor],
             train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
             loss_w: torch.Tensor, cfg: BranchTrainConfig) -> tuple[float, list[dict]]:
    """The branch recipe's training loop over feature tensors already on the device.

    AdamW on ``head``'s parameters (``cfg.lr``, ``cfg.weight_decay``), warm-up + cosine per step
    (``_schedule``), the per-head weighted BCE, batches shuffled by a generator seeded with
    ``cfg.seed``; ``logits(x)`` maps a feature batch to logits through ``head`` (for the branch,
    with its standardisation). After each epoch the validation loss; the best epoch's weights are
    loaded back into ``head``, left in eval mode. Returns (best validation loss, one row per epoch).
    ``bench/branch_colour_stats.py`` and ``bench/branch_polar_targets.py`` train their arms with it,
    so they follow the shipped recipe.
    """
    (xt, yt), (xv, yv) = train, val
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(xt) / cfg.batch_size)
    sched = _schedule(opt, cfg, steps * cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, log = float("inf"), None, []
    for epoch in range(cfg.epochs):
        head.train()
        perm = torch.randperm(len(xt), generator=gen).to(xt.device)
        for b in range(steps):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            loss = head_loss(logits(xt[idx]), yt[idx], loss_w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        head.eval()
        with torch.no_grad():
            val_loss = head_loss(logits(xv), yv, loss_w).item()
        log.append({"epoch": epoch + 1, "train_loss": round(loss.item(), 5), "val_loss": round(val_loss, 5),
                    "best": val_loss < best})
        if val_loss < best:
            best = val_loss
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    head.eval()
    return best, log


def _check_out_dir(out: Path, cfg: BranchTrainConfig) -> None:
    """``out_dir`` may be new, or an earlier run of this same config (it is rerun: the MLP's
    training is deterministic); not another run's output, nor any other model (the CNN itself)."""
    from ..load import BASELINE_CONFIG_NAME

    if out.exists() and Path(cfg.cnn).exists() and out.resolve() == Path(cfg.cnn).resolve():
        raise ValueError(f"branch training: --out {out} is the --cnn folder; write the branched model to another folder")
    saved = out / "branch_train_config.json"
    if saved.is_file():
        try:
            before = json.loads(saved.read_text())
        except ValueError:
            before = None
        now = json.loads(json.dumps(asdict(cfg)))
        if before != now:
            differ = sorted(k for k in now if not isinstance(before, dict) or before.get(k) != now[k])
            raise ValueError(f"branch training: --out {out} holds another branch-train run (settings that differ: "
                             f"{', '.join(differ)}); choose another --out, or delete it")
    elif (out / BASELINE_CONFIG_NAME).is_file():
        raise ValueError(f"branch training: --out {out} holds a model that branch-train did not write; choose another --out")


def train_branch(cfg: BranchTrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Features -> MLP -> mix on validation -> ``cfg.out_dir`` holds CNN + branch."""
    usable_device(cfg.device, "branch training")  # before anything is written or any feature computed
    out = Path(cfg.out_dir)
    _check_out_dir(out, cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    cnn = load_degradation_model(cfg.cnn, cnn_only=True)
    assert isinstance(cnn, DegradationNet)
    heads = cnn.cfg.heads
    unknown = sorted(set(cfg.loss_weights) - set(heads))
    if unknown:
        raise ValueError(f"branch training: loss_weights names {unknown}, which are not heads {list(heads)}")
    # The head each validation sweep set grades, read before any feature or training work: a set
    # that is not a sweep fails here, not after the MLP's epochs.
    ink = model_watermark_ink(cfg.cnn)
    sweep_heads = sweep_sets(cfg.val_sweeps, heads, cnn.cfg.image_size, ink)
    # Every training and validation set too, before the first set's features (hours on a CPU).
    for path in [*cfg.train_data, cfg.val_data]:
        images, _, meta = load_synth_dataset(path)
        check_rendered(path, images, meta, heads, cnn.cfg.image_size, ink)
    branch = imagenet_branch(cfg.branch_config(), len(heads), cnn.cfg.image_size)
    # Every check passed: only now is --out created (a failed run leaves no folder behind).
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "branch_train_config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    def rendered(path):
        images, labels, _ = load_synth_dataset(path)
        feats = branch_features(branch, path, batch_size=cfg.feature_batch_size, device=cfg.device, progress=progress)
        return feats, labels, images

    parts = [rendered(p) for p in cfg.train_data]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_va, y_va, _ = rendered(cfg.val_data)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    branch.feat_mean.copy_(torch.from_numpy(mean))
    branch.feat_std.copy_(torch.from_numpy(std))

    device = torch.device(cfg.device)
    branch = branch.to(device)
    xt, yt = torch.from_numpy(x_tr).to(device), torch.from_numpy(y_tr).to(device)
    xv, yv = torch.from_numpy(x_va).to(device), torch.from_numpy(y_va).to(device)
    loss_w = torch.tensor([cfg.loss_weights.get(h, 1.0) for h in heads], device=device)
    t0 = time.perf_counter()
    best, log = fit_head(branch.head, branch.head_logits, (xt, yt), (xv, yv), loss_w, cfg)
    mix, mix_info = blend_on_validation(cnn, branch, cfg.val_data, sweep_heads, device=cfg.device,
                                        batch_size=cfg.feature_batch_size, progress=progress)
    branch.cfg = cfg.branch_config(mix)
    model = BranchedDegradationNet(cnn.cpu(), branch.cpu()).eval()
    model_id = cfg.model_id or json.loads((Path(cfg.cnn) / "deqa_baseline.json").read_text()).get("model_id", "deqa-degradation")
    save_degradation_model(model, out, extra={"model_id": model_id, **watermark_ink_extra(ink)})
    summary = {"best_val_loss": round(best, 5), "mix": mix, "mix_choice": mix_info,
               "seconds": round(time.perf_counter() - t0, 1), "n_train": len(xt), "log": log}
    with open(out / "branch_train_log.jsonl", "w") as f:
        for row in log:
            f.write(json.dumps(row) + "\n")
        f.write(json.dumps({k: v for k, v in summary.items() if k != "log"}) + "\n")
    return summary
