"""Frozen encoder + MLP head: embeddings cached on disk, a small head regresses quality in [0, 1].

The head is exactly Linear(d, 256) - ReLU - Dropout(0.1) - Linear(256, 64) - ReLU - Linear(64, 1)
- Sigmoid. Training never runs the encoder twice on the same image: embeddings are cached in
``<cache>/<encoder cache_id>/<sha256 of the image bytes>.npy`` (plain ``.npy``, loaded with
``allow_pickle=False``), so a second pass (another head, other hyper-parameters) is read from disk.
The cache id covers the encoder, its weights and the preprocessing, so changing any of them can
never return stale embeddings.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..fileio import atomic_write, file_digest
from ..imageio import ImageLoadError, load_image
from ..levels import level_word
from ..results import ScoreResult
from ..scorer import Scorer
from .dictconfig import from_dict_strict
from .encoders import EncoderSpec, FrozenEncoder, build_encoder
from .thresholds import ThresholdPolicy

__all__ = [
    "QualityHead",
    "EmbeddingCache",
    "HeadTrainConfig",
    "train_head",
    "read_score_table",
    "EncoderHeadScorer",
    "save_encoder_head",
    "load_encoder_head_scorer",
    "image_hash",
]

HEAD_WEIGHTS_NAME = "head.safetensors"


class QualityHead(nn.Module):
    """[B, d] embeddings -> [B] quality in [0, 1] (sigmoid); :meth:`logits` before the sigmoid."""

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(
            nn.Linear(dim, 256), nn.ReLU(), nn.Dropout(dropout), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 1)
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def image_hash(source: str | os.PathLike | Image.Image) -> str:
    """sha256 of a file's bytes, or of a PIL image's mode, size and pixels."""
    if not isinstance(source, Image.Image):
        return file_digest(source)
    h = hashlib.sha256()
    h.update(f"{source.mode}:{source.size}".encode())
    h.update(source.tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """On-disk embeddings of one encoder, keyed by image content hash; counts hits and misses."""

    def __init__(self, root: str | os.PathLike, encoder: FrozenEncoder):
        self.encoder = encoder
        self.dir = Path(root) / encoder.cache_id
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "encoder.json"
        if not info.is_file():
            info.write_text(json.dumps({"spec": asdict(encoder.spec), "weights": encoder.weights_id,
                                        "preprocess": asdict(encoder.preprocess), "dim": encoder.dim}, indent=1))
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def embed(self, sources: list, batch_size: int = 32, progress: bool = False,
              failures: list[tuple[int, str]] | None = None) -> np.ndarray:
        """Embeddings [N, dim] for image paths / PIL images, computing only the missing ones.

        An input that cannot be read (missing, a folder, not an image) raises, unless a
        ``failures`` list is given: then it is appended as ``(index, reason)``, its row stays
        zero, and the others are embedded (a cache write that fails still raises). ``misses``
        counts the embeddings computed, ``hits`` those read from the cache.
        """
        from tqdm.auto import tqdm

        def read(i: int, fn):
            try:
                return fn(sources[i])
            except (ImageLoadError, OSError) as err:
                if failures is None:
                    raise
                reason = ("no such file" if isinstance(err, FileNotFoundError) else
                          "not a file" if isinstance(err, IsADirectoryError) else
                          getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err))
                failures.append((i, reason))
                return None

        out = np.zeros((len(sources), self.encoder.dim), dtype=np.float32)
        keys: dict[int, str] = {}
        todo = []
        for i in range(len(sources)):
            k = read(i, image_hash)
            if k is None:
                continue
            keys[i] = k
            p = self._path(k)
            if p.is_file():
                out[i] = np.load(p, allow_pickle=False)
                self.hits += 1
            else:
                todo.append(i)
        device = next(self.encoder.parameters(), torch.zeros(())).device
        for s in tqdm(range(0, len(todo), batch_size), disable=not progress, desc="embed"):
            loaded = [(i, read(i, load_image)) for i in todo[s : s + batch_size]]
            idx = [i for i, img in loaded if img is not None]
            if not idx:
                continue
            imgs = [img for _, img in loaded if img is not None]
            emb = self.encoder.embed(self.encoder.preprocess.collate(imgs).to(device)).cpu().numpy()
            self.misses += len(idx)
            for i, e in zip(idx, emb, strict=True):
                out[i] = e
                p = self._path(keys[i])
                p.parent.mkdir(exist_ok=True)
                with atomic_write(p, "wb") as f:  # a killed job leaves no half-written embedding
                    np.save(f, e.astype(np.float32), allow_pickle=False)
        return out


@dataclass
class HeadTrainConfig:
    """Training of the MLP head on cached embeddings."""

    loss: str = "bce"
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    patience: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in ("bce", "mse"):
            raise ValueError(f"loss must be 'bce' or 'mse', got {self.loss!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadTrainConfig:
        return from_dict_strict(cls, d, "head training config")


def train_head(emb: np.ndarray, targets: np.ndarray, cfg: HeadTrainConfig) -> tuple[QualityHead, list[dict]]:
    """Fit a :class:`QualityHead` on embeddings [N, d] and targets [N] in [0, 1].

    AdamW with cosine decay; with ``val_fraction`` > 0 the epoch with the lowest validation loss
    is kept (early stopping after ``patience`` epochs without improvement).
    """
    emb = np.asarray(emb, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(targets):
        raise ValueError(f"embeddings {emb.shape} and targets {targets.shape} do not match")
    bad = np.flatnonzero(~np.isfinite(emb).all(1))
    if len(bad):
        raise ValueError(f"embeddings of rows {bad[:10].tolist()} contain NaN/Inf; run `deqa baseline diagnose`")
    out_of_range = np.flatnonzero((targets < 0) | (targets > 1) | ~np.isfinite(targets))
    if len(out_of_range):
        raise ValueError(f"targets must be in [0, 1]; rows {out_of_range[:10].tolist()} are not (rescale with --score-range)")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n = len(emb)
    perm = torch.randperm(n, generator=g).numpy()
    n_val = int(round(n * cfg.val_fraction)) if n >= 10 else 0
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    x = torch.from_numpy(emb)
    y = torch.from_numpy(targets)
    head = QualityHead(emb.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(tr_idx) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=cfg.lr * 0.01)

    def loss_fn(logits, t):
        if cfg.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, t)
        return F.mse_loss(torch.sigmoid(logits), t)

    best, best_state, bad_epochs, history = math.inf, None, 0, []
    for epoch in range(cfg.epochs):
        head.train()
        order = tr_idx[torch.randperm(len(tr_idx), generator=g).numpy()]
        total = 0.0
        for s in range(0, len(order), cfg.batch_size):
            b = order[s : s + cfg.batch_size]
            loss = loss_fn(head.logits(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        row = {"epoch": epoch + 1, "train_loss": total / max(len(order), 1)}
        if n_val:
            head.eval()
            with torch.no_grad():
                row["val_loss"] = loss_fn(head.logits(x[val_idx]), y[val_idx]).item()
            if row["val_loss"] < best - 1e-6:
                best, bad_epochs = row["val_loss"], 0
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
            else:
                bad_epochs += 1
        history.append(row)
        if n_val and bad_epochs >= cfg.patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    return head.eval(), history


def read_score_table(path: str | os.PathLike, *, score_range: tuple[float, float] = (0.0, 1.0),
                     check_images: bool = False) -> tuple[list[str], np.ndarray]:
    """Read ``image,score`` rows from a CSV or JSONL file; relative paths are from the file's folder.

    The CSV's image column may also be named as in deqa-score manifests (path, image_path, file,
    filename; any case); a UTF-8 byte-order mark (Excel's "CSV UTF-8") is ignored. Scores are
    mapped from ``score_range`` to [0, 1]; a value outside the range is an error naming its row.
    ``check_images``: every image must be an existing file (the error names the rows that are not).
    """
    from ..inputs import MANIFEST_PATH_COLUMNS

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: score table not found")
    rows: list[dict] = []
    try:
        if path.suffix == ".jsonl":
            for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append({**json.loads(line), "_row": i})
                    except (json.JSONDecodeError, TypeError) as err:
                        raise ValueError(f"{path}:{i}: not a JSON object ({err})") from None
        else:
            # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which would make the header '\ufeffimage'.
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                columns = {c.strip().lower(): c for c in (reader.fieldnames or []) if c}
                image_col = next((columns[c] for c in MANIFEST_PATH_COLUMNS if c in columns), None)
                score_col = columns.get("score")
                if image_col is None or score_col is None:
                    raise ValueError(f"{path}: needs columns 'image' and 'score' (the image column may also be named "
                                     f"{', '.join(MANIFEST_PATH_COLUMNS[1:])}), has {reader.fieldnames}")
                # line_num, not a count: blank lines are skipped, and the error must name the file's line.
                rows = [{"image": r[image_col], "score": r[score_col], "_row": reader.line_num} for r in reader]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason}); save it as CSV UTF-8") from None
    lo, hi = score_range
    if not hi > lo:
        raise ValueError(f"score range must have hi > lo, got {score_range}")
    images, scores, missing = [], [], []
    for r in rows:
        if "image" not in r or "score" not in r:
            raise ValueError(f"{path}:{r['_row']}: needs 'image' and 'score'")
        try:
            s = float(r["score"])
        except (TypeError, ValueError):
            raise ValueError(f"{path}:{r['_row']}: score {r['score']!r} is not a number") from None
        if not lo <= s <= hi:
            raise ValueError(f"{path}:{r['_row']}: score {s} outside the score range [{lo}, {hi}] (set --score-range)")
        if not isinstance(r["image"], str) or not r["image"].strip():
            raise ValueError(f"{path}:{r['_row']}: empty image path")
        img = Path(r["image"].strip())
        img = img if img.is_absolute() else path.parent / img
        if check_images and not img.is_file():
            missing.append(f"{path}:{r['_row']}: {img}")
        images.append(str(img))
        scores.append((s - lo) / (hi - lo))
    if not images:
        raise ValueError(f"{path}: no rows")
    if missing:
        raise ValueError(f"{len(missing)} image(s) of the table not found: " + "; ".join(missing[:10])
                         + ("; ..." if len(missing) > 10 else ""))
    return images, np.asarray(scores, dtype=np.float32)


class EncoderHeadScorer(Scorer):
    """Frozen encoder + trained head as a :class:`deqa.scorer.Scorer` (eval mode enforced)."""

    default_batch_size = 16

    def __init__(self, encoder: FrozenEncoder, head: QualityHead, *, model_id: str = "deqa-encoder-head",
                 thresholds: ThresholdPolicy | None = None, device: str | None = None):
        self.device = torch.device(device or "cpu")
        self.encoder = encoder.to(self.device).eval()
        self.head = head.to(self.device).eval()
        self.model_id = model_id
        self.thresholds = thresholds or ThresholdPolicy()

    def make_collate(self):
        return self.encoder.transform()

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> list[ScoreResult]:
        self.encoder.eval()
        self.head.eval()  # someone may have called .train(); dropout must be off here
        q = self.head(self.encoder.embed(batch.to(self.device))).clamp(0.0, 1.0).cpu().numpy()
        out = []
        for v in q:
            score = 1.0 + 4.0 * float(v)
            out.append(ScoreResult("", score, float(v), level_word(score), self.model_id))
        return out


def save_encoder_head(folder: str | os.PathLike, spec: EncoderSpec, head: QualityHead, *,
                      thresholds: ThresholdPolicy | None = None, model_id: str = "deqa-encoder-head",
                      aggregation: str = "median", extra: dict | None = None) -> Path:
    """Write ``deqa_baseline.json`` + ``head.safetensors`` (the encoder is referenced, not copied)."""
    from safetensors.torch import save

    from ..load import BASELINE_CONFIG_NAME

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / HEAD_WEIGHTS_NAME, "wb") as f:
        f.write(save({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}))
    cfg = {
        "type": "encoder_head",
        "format_version": 1,
        "model_id": model_id,
        "encoder": asdict(spec),
        "head": {"dim": head.dim},
        "aggregation": aggregation,
        "thresholds": (thresholds or ThresholdPolicy()).to_dict(),
        **(extra or {}),
    }
    (folder / BASELINE_CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
    return folder


def load_encoder_head_scorer(folder: str | os.PathLike, config: dict | None = None, *, device: str | None = None) -> EncoderHeadScorer:
    """Rebuild encoder + head from a folder written by :func:`save_encoder_head`."""
    from ..fileio import read_weights
    from ..load import BASELINE_CONFIG_NAME

    folder = Path(folder)
    if config is None:
        config = json.loads((folder / BASELINE_CONFIG_NAME).read_text())
    spec = EncoderSpec.from_dict(config["encoder"])
    encoder = build_encoder(spec, device)
    dim = int(config["head"]["dim"])
    if dim != encoder.dim:
        raise ValueError(f"{folder}: head expects {dim}-d embeddings but encoder {spec.name} gives {encoder.dim}")
    head = QualityHead(dim)
    head.load_state_dict(read_weights(folder / HEAD_WEIGHTS_NAME, "pt"))
    return EncoderHeadScorer(encoder, head, model_id=config.get("model_id", folder.name),
                             thresholds=ThresholdPolicy.from_dict(config.get("thresholds", {})), device=device)


