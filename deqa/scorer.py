"""The one interface every quality model implements, and the batched input pipeline they share.

A concrete scorer (the VLM :class:`deqa.scoring.VLMScorer`, the baselines) only says how to turn
a list of decoded RGB images into model inputs (:meth:`Scorer.make_collate`, run inside
DataLoader workers so decoding and preprocessing overlap the model) and how to turn those inputs
into results (:meth:`Scorer.predict`). Decoding, error reporting, batching, ordering and the
progress bar live here once.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any

from PIL import Image

from .imageio import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from .results import ScoreFailure, ScoreResult

__all__ = ["Scorer", "ImageInput", "input_name"]

ImageInput = str | os.PathLike | Image.Image


def input_name(item: ImageInput, index: int) -> str:
    """How an input is named in results and error messages: its path, or ``<image N>``."""
    if isinstance(item, Image.Image):
        return f"<image {index}>"
    return str(item)


def _identity_collate(images: list[Image.Image]) -> list[Image.Image]:
    return images


class _DecodeDataset:
    """Map-style dataset: index -> (index, RGB image or None, error message or None)."""

    def __init__(self, inputs: Sequence[ImageInput], max_pixels: int | None):
        self.inputs = inputs
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[int, Image.Image | None, str | None]:
        item = self.inputs[i]
        try:
            return i, load_image(item, max_pixels=self.max_pixels), None
        except ImageLoadError as err:
            return i, None, err.reason
        except Exception as err:  # noqa: BLE001 - one odd file must not stop a 100k-image job
            return i, None, f"{type(err).__name__}: {err}"


class _Collate:
    """Picklable collate: keeps failures aside, preprocesses the good images of a batch."""

    def __init__(self, collate: Callable[[list[Image.Image]], Any]):
        self.collate = collate

    def __call__(self, items):
        good = [(i, img) for i, img, err in items if err is None]
        failed = [(i, err) for i, img, err in items if err is not None]
        model_inputs = None
        error = None
        if good:
            try:
                model_inputs = self.collate([img for _, img in good])
            except Exception as err:  # noqa: BLE001 - reported per image below
                error = f"preprocessing failed: {type(err).__name__}: {err}"
            if error is not None and len(good) > 1:
                # One odd image (e.g. an aspect ratio the processor refuses) must not sink the
                # whole batch: find the culprits one by one and preprocess the rest together.
                good, failed, error = self._isolate(good, failed)
                if good:
                    try:
                        model_inputs = self.collate([img for _, img in good])
                    except Exception as err:  # noqa: BLE001 - fails only together: report all
                        error = f"preprocessing failed: {type(err).__name__}: {err}"

        return [i for i, _ in good], model_inputs, failed, error

    def _isolate(self, good, failed):
        ok = []
        failed = list(failed)
        for i, img in good:
            try:
                self.collate([img])
                ok.append((i, img))
            except Exception as err:  # noqa: BLE001 - reported for this image
                failed.append((i, f"preprocessing failed: {type(err).__name__}: {err}"))
        return ok, failed, None


class _DecodeAndCollate:
    """Picklable task of the torch-free pipeline: one planned batch of indices -> collated batch."""

    def __init__(self, dataset: _DecodeDataset, collate: _Collate):
        self.dataset = dataset
        self.collate = collate

    def __call__(self, indices: Sequence[int]):
        return self.collate([self.dataset[i] for i in indices])


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the main process stops the job (and the pool's
    # exit terminates the workers); a worker printing its own KeyboardInterrupt traceback
    # would only bury the main process's one-line "interrupted" message.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _torch_free_batches(dataset: _DecodeDataset, plan: list[list[int]], collate: _Collate, num_workers: int):
    """What a DataLoader with ``batch_sampler=plan`` yields, without importing torch.

    Workers are forked processes; at most two batches per worker are in flight, so a slow model
    never lets decoded images pile up in memory on a long job.
    """
    task = _DecodeAndCollate(dataset, collate)
    if num_workers == 0 or len(plan) == 1:  # one batch: a worker would only add its start-up
        yield from map(task, plan)
        return
    import multiprocessing as mp
    from collections import deque
    from itertools import islice

    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(num_workers, initializer=_ignore_sigint) as pool:
        todo = iter(plan)
        in_flight = deque(pool.apply_async(task, (b,)) for b in islice(todo, 2 * num_workers))
        while in_flight:
            batch = in_flight.popleft().get()
            nxt = next(todo, None)
            if nxt is not None:
                in_flight.append(pool.apply_async(task, (nxt,)))
            yield batch


class Scorer(abc.ABC):
    """A quality model: images in, :class:`ScoreResult` out.

    Subclasses set ``model_id`` and ``level_words`` and implement :meth:`predict`; they may
    override :meth:`make_collate` (preprocessing in workers) and :meth:`batch_order`. A scorer
    whose model runs without torch sets ``needs_torch = False``: the pipeline then decodes in
    forked worker processes instead of a torch DataLoader and never imports torch (the built-in
    model's cold start).
    """

    model_id: str = "unknown"
    needs_torch: bool = True
    level_words: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
    default_batch_size: int = 8
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    # -- what a model provides ------------------------------------------------------------
    def make_collate(self) -> Callable[[list[Image.Image]], Any]:
        """A picklable callable turning decoded RGB images into this model's batch inputs."""
        return _identity_collate

    @abc.abstractmethod
    def predict(self, batch: Any) -> list[ScoreResult]:
        """Score one collated batch; results in batch order, ``input`` left empty."""

    def batch_order(self, inputs: Sequence[ImageInput], batch_size: int) -> list[list[int]]:
        """Which input indices form each batch. Default: consecutive chunks."""
        return [list(range(s, min(s + batch_size, len(inputs)))) for s in range(0, len(inputs), batch_size)]

    # -- shared pipeline --------------------------------------------------------------------
    def iter_score(
        self,
        inputs: Sequence[ImageInput],
        *,
        batch_size: int | None = None,
        num_workers: int = 0,
        progress: bool = False,
        batches: Sequence[Sequence[int]] | None = None,
        skip: Collection[int] = (),
    ) -> Iterator[ScoreResult | ScoreFailure]:
        """Yield one :class:`ScoreResult` or :class:`ScoreFailure` per input, in input order.

        Results stream out as batches finish, so callers can write them incrementally.

        ``batches`` runs an explicit plan (lists of input indices; default
        :meth:`batch_order`), e.g. one process's share of a multi-process job; only the indices
        in it are reported. ``skip`` leaves indices out (e.g. already in an output being
        resumed): a batch that is entirely skipped is not run, a partly skipped one is run whole,
        so every reported score comes from the same batch an uninterrupted run would use.
        """
        from tqdm.auto import tqdm

        inputs = list(inputs)
        if not inputs:
            return
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        plan = [list(b) for b in (self.batch_order(inputs, batch_size) if batches is None else batches)]
        skip = set(skip)
        plan = [b for b in plan if b and not skip.issuperset(b)]
        order = sorted({i for b in plan for i in b} - skip)
        if not order:
            return
        names = [input_name(x, i) for i, x in enumerate(inputs)]
        dataset, collate = _DecodeDataset(inputs, self.max_pixels), _Collate(self.make_collate())
        if self.needs_torch:
            import torch
            from torch.utils.data import DataLoader

            loader = DataLoader(
                dataset,
                batch_sampler=plan,
                num_workers=num_workers,
                collate_fn=collate,
                # PIL images in the inputs list cannot cross a spawn boundary cheaply; fork shares them.
                multiprocessing_context="fork" if num_workers > 0 and hasattr(os, "fork") else None,
                persistent_workers=False,
            )
            no_grad = torch.inference_mode()
        else:
            loader = _torch_free_batches(dataset, plan, collate, num_workers)
            no_grad = contextlib.nullcontext()
        bar = tqdm(total=len(order), disable=not progress, unit="img", dynamic_ncols=True)
        pending: dict[int, ScoreResult | ScoreFailure] = {}
        pos = 0
        try:
            with no_grad:
                for indices, model_inputs, failed, error in loader:
                    done: dict[int, ScoreResult | ScoreFailure] = {}
                    for i, err in failed:
                        done[i] = ScoreFailure(names[i], err)
                    if indices:
                        if error is not None:
                            for i in indices:
                                done[i] = ScoreFailure(names[i], error)
                        else:
                            results = self.predict(model_inputs)
                            if len(results) != len(indices):
                                raise RuntimeError(
                                    f"{type(self).__name__}.predict returned {len(results)} results for {len(indices)} images"
                                )
                            for i, res in zip(indices, results, strict=True):
                                done[i] = replace(res, input=names[i])
                    fresh = {i: r for i, r in done.items() if i not in skip}
                    pending.update(fresh)
                    bar.update(len(fresh))
                    # Re-establish input order (batch_order may group by image size).
                    while pos < len(order) and order[pos] in pending:
                        yield pending.pop(order[pos])
                        pos += 1
        finally:
            bar.close()
            if not self.needs_torch:
                loader.close()  # stops the decode workers of an abandoned iteration now

    def score(self, inputs: ImageInput | Sequence[ImageInput], **kwargs) -> list[ScoreResult]:
        """Score images (paths or PIL images); raise :class:`ImageLoadError` for the first bad one."""
        single = isinstance(inputs, (str, os.PathLike, Image.Image))
        items = [inputs] if single else list(inputs)
        out: list[ScoreResult] = []
        for res in self.iter_score(items, **kwargs):
            if isinstance(res, ScoreFailure):
                raise ImageLoadError(res.input, res.error)
            out.append(res)
        return out
