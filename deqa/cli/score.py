"""``deqa-score``: score images with the built-in model, a baseline, or any VLM.

    deqa-score photo.jpg                                   # built-in model, table on stdout
    deqa-score --model Qwen/Qwen2.5-VL-7B-Instruct photos/ -r -o scores.jsonl
    deqa-score --model outputs/run/checkpoint-400 'data/**/*.png' --format csv -o s.csv
    accelerate launch -m deqa.cli.score --model ... photos/ -o scores.jsonl   # many GPUs

Exit codes: 0 all inputs scored; 2 some inputs failed (listed on stderr and in the output);
1 bad arguments, inputs or model; 130 interrupted (rerun the same command to resume); 141 stdout
was closed by its reader (`| head`).

This module imports no torch/transformers/peft at import time: the built-in model must start fast
(without --device it runs in numpy and torch is never imported; see deqa.baselines.degradation_numpy).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from ..imageio import DEFAULT_MAX_PIXELS
from ..inputs import InputError, expand_inputs
from ..load import TORCH_FROM_N_IMAGES, baseline_device, is_baseline
from ..outputs import (
    FORMATS,
    drop_failures,
    format_for_path,
    format_table,
    is_failure_row,
    open_writer,
    read_records,
)
from ..results import ScoreFailure
from .args import Parser, int_at_least

__all__ = ["main", "build_parser"]

# Flags that only mean something for a VLM; combined with a baseline they are an error.
_VLM_ONLY = {
    "adapter": "--adapter",
    "dtype": "--dtype",
    "load_in_4bit": "--load-in-4bit",
    "load_in_8bit": "--load-in-8bit",
    "trust_remote_code": "--trust-remote-code",
    "attn_implementation": "--attn-implementation",
    "max_length": "--max-length",
    "group_by_size": "--[no-]group-by-size",
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="deqa-score",
        description="Score image quality (1 = bad ... 5 = excellent). Results stream to -o FILE "
        "(resumable) or print as a table.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, directories, quoted glob patterns, or manifests (.txt, .csv, .tsv, .jsonl)",
    )
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-directories")
    p.add_argument(
        "-m",
        "--model",
        default=None,
        help="a VLM hub id or folder, a deqa checkpoint, or a baseline folder (default: the built-in model)",
    )
    p.add_argument("--adapter", default=None, help="LoRA adapter folder to apply to --model")
    p.add_argument(
        "-b",
        "--batch-size",
        type=int_at_least(1),
        default=None,
        help="images per forward pass (default: the model's)",
    )
    p.add_argument(
        "--num-workers",
        type=int_at_least(0, "0 = decode in the main process"),
        default=None,
        help="DataLoader workers decoding/preprocessing images (default: CPU cores - 1, at most 8)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1, ... (default: CUDA if available; the built-in model and other "
        "degradation baselines run in numpy on the CPU without importing torch, which starts ~2 s sooner, "
        f"and on the GPU from {TORCH_FROM_N_IMAGES} images when there is one; naming a device runs their torch build)",
    )
    p.add_argument(
        "--views",
        default=None,
        choices=["whole", "windows"],
        help="degradation baselines: 'whole' reads each image resized to 224 px only; 'windows' also "
        "reads full-resolution windows of photos >= 448 px for the noise and JPEG heads, which a resize "
        "hides (default: the model's setting; the built-in model uses windows)",
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=["auto", "bf16", "fp16", "fp32", "bfloat16", "float16", "float32"],
        help="VLM weight dtype (default auto: bf16/fp16 on CUDA, fp32 on CPU)",
    )
    p.add_argument(
        "--load-in-4bit",
        action="store_true",
        help="quantise the VLM's language model to 4-bit nf4 (bitsandbytes)",
    )
    p.add_argument(
        "--load-in-8bit",
        action="store_true",
        help="quantise the VLM's language model to 8-bit (bitsandbytes)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the model's own code from the hub (off by default)",
    )
    p.add_argument("--attn-implementation", default=None, help="sdpa, flash_attention_2 or eager")
    p.add_argument(
        "--max-length",
        type=int_at_least(1),
        default=None,
        help="reject prompts longer than this many tokens",
    )
    p.add_argument(
        "--group-by-size",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="batch images of similar size together (default: on for dynamic-resolution VLMs)",
    )
    p.add_argument(
        "--max-pixels",
        type=int_at_least(0, "0 = no limit"),
        default=None,
        help=f"refuse images with more pixels than this (decompression-bomb guard; default {DEFAULT_MAX_PIXELS:,}, "
        "Pillow's own; 0 = no limit)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: from the -o extension, else table)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="write results here (.jsonl, .csv, .json); inputs already in the file are skipped",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="with -o: score again the inputs the file holds as failed (their failure rows are removed first)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (scoring, nor a VLM's weight loading)")
    return p


def _default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _check_model_flags(args) -> None:
    if not is_baseline(args.model):
        if args.views is not None:
            raise ValueError(f"--views {args.views}: only degradation baselines read windows, not the VLM {args.model}")
        return
    # group_by_size is None unless given (--no-group-by-size is False); the others default to None or False.
    used = [flag for attr, flag in _VLM_ONLY.items()
            if (getattr(args, attr) is not None if attr == "group_by_size" else getattr(args, attr) not in (None, False))]
    if used:
        which = (
            "the built-in model"
            if args.model in (None, "builtin")
            else f"the baseline in {args.model}"
        )
        raise ValueError(
            f"{', '.join(used)}: VLM-only option(s), not usable with {which}; drop them or pass a VLM as --model"
        )


def _check_device(device: str) -> None:
    """--device must name a device torch can use on this machine. Checked before any model
    loads, so a typo or a missing GPU is one line naming the option, not a traceback from deep
    inside the loader. Only called when --device is given: it imports torch."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"--device {device}: not a device name; use cpu, cuda, cuda:N or mps "
            "(or leave --device out)"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"--device {device}: CUDA is not available on this machine (torch finds no "
                "NVIDIA GPU or driver); use --device cpu, or leave --device out"
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"--device {device}: MPS is not available on this machine; use --device cpu"
        )


def _same_model(a: str, b: str) -> bool:
    # A local model folder spelt two ways (runs/ckpt, ./runs/ckpt, an absolute path) is one model
    # when its weights are the same: ids are "<name>@<weights fingerprint>", with "+" before an
    # adapter's part.
    if a == b:
        return True
    parts_a, parts_b = a.split("+"), b.split("+")
    return len(parts_a) == len(parts_b) and all(_same_part(x, y) for x, y in zip(parts_a, parts_b, strict=True))


def _same_part(a: str, b: str) -> bool:
    (name_a, tag_a), (name_b, tag_b) = (p.rsplit("@", 1) if "@" in p else (p, "") for p in (a, b))
    if tag_a != tag_b:
        return False
    try:
        return name_a == name_b or (os.path.exists(name_a) and os.path.exists(name_b) and os.path.samefile(name_a, name_b))
    except OSError:
        return False


def _model_mismatch(output: str, previous: list[dict], model_id: str) -> str | None:
    """An error message when ``output`` holds scores from another model than ``model_id``.
    Rows are matched on ``input`` only, so resuming into such a file would silently keep the
    other model's scores (and add this one's beside them). Failure rows name no model and
    never conflict."""
    other = next(
        (
            row["model"]
            for row in previous
            if row.get("model") not in (None, "") and not _same_model(row["model"], model_id)
        ),
        None,
    )
    if other is None:
        return None
    return (
        f"-o {output} holds scores from model {other!r}, but this run scores with "
        f"{model_id!r}; its inputs would be skipped as already scored. Pick another -o file "
        "(or delete this one to start over)"
    )


def _build_scorer(args, device, n_images: int = 1):
    """``n_images``: the job's size, which picks a baseline's numpy or torch build when no
    device is named (see :func:`deqa.load.baseline_device`)."""
    from ..load import load_scorer

    if is_baseline(args.model):
        try:
            views = {} if args.views is None else {"views": args.views}
            return load_scorer(args.model, device=baseline_device(device, n_images), **views)
        except ImportError as err:
            if "deqa.baselines" in str(err) or (err.name or "").startswith("deqa.baselines"):
                raise ValueError(
                    f"the baseline models are not part of this installation ({err}); pass a VLM with --model"
                ) from None
            raise
    kwargs = dict(
        adapter=args.adapter,
        device=device,
        dtype=args.dtype,
        load_in_4bit=args.load_in_4bit,
        load_in_8bit=args.load_in_8bit,
        trust_remote_code=args.trust_remote_code,
        attn_implementation=args.attn_implementation,
        group_by_size=args.group_by_size,
        max_length=args.max_length,
    )
    if args.quiet:
        # -q promises no progress bars; transformers draws its own while loading the weights.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return load_scorer(args.model, **kwargs)


def _err(msg: str) -> None:
    print(f"deqa-score: {msg}", file=sys.stderr, flush=True)


def _stops_every_rank(comm, error: str | None) -> bool:
    """Whether rank 0's ``error`` (about the -o file, which only rank 0 reads and writes) stops
    the job; rank 0 prints it. Broadcast first: if rank 0 stopped alone, the other ranks would
    wait for it at the next collective."""
    if comm is not None:
        error = comm.broadcast(error)
    if error is not None and (comm is None or comm.rank == 0):
        _err(f"error: {error}")
    return error is not None


def main(argv: list[str] | None = None) -> int:
    # A file name that is not UTF-8 reaches us holding lone surrogates (os.fsdecode): print its
    # own bytes, as ls does, instead of failing in the middle of the output.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`deqa-score photos/ --format jsonl | head -1`): stop quietly, as a
        # command killed by SIGPIPE does, and keep the interpreter's final flush off the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    # Intermixed: file names may follow options (`deqa-score photos/ -r more.jpg`).
    args = build_parser().parse_intermixed_args(argv)
    try:
        if args.load_in_4bit and args.load_in_8bit:
            raise ValueError("choose one of --load-in-4bit and --load-in-8bit")
        _check_model_flags(args)
        if args.device == "auto":  # the default, spelt out
            args.device = None
        if args.device is not None:
            _check_device(args.device)
        if args.retry_failed and not args.output:
            raise ValueError("--retry-failed retries the failures recorded in an -o file; give one with -o")
        if args.output and Path(args.output).is_dir():
            raise ValueError(f"-o {args.output} is a folder; give a file name such as scores.jsonl")
        fmt = args.format or (format_for_path(args.output) if args.output else "table")
        if args.output and fmt == "table":
            raise ValueError(
                "the table format is for the terminal; write files as .jsonl, .csv or .json"
            )
        inputs = expand_inputs(args.inputs, recursive=args.recursive)
    except (InputError, ValueError) as err:
        _err(f"error: {err}")
        return 1

    from ..parallel import distributed_comm

    dist = distributed_comm()
    comm, device = dist if dist is not None else (None, args.device)
    if args.device is not None:
        device = args.device
    rank0 = comm is None or comm.rank == 0

    previous: list[dict] = []
    wanted = set(inputs)
    read_error = None
    if args.output and rank0:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                previous = read_records(args.output, fmt)
        except (ValueError, OSError) as err:
            read_error = str(err)
        else:
            for w in caught:  # e.g. a half-written last row of a killed run, cut and redone
                _err(f"warning: {w.message}")
            if args.retry_failed:
                retry = {row["input"] for row in previous if is_failure_row(row) and row["input"] in wanted}
                try:
                    dropped = drop_failures(args.output, fmt, retry)
                except OSError as err:
                    read_error = f"cannot rewrite -o {args.output}: {err.strerror or err}"
                else:
                    previous = [row for row in previous if not (is_failure_row(row) and row["input"] in retry)]
                    if dropped:
                        _err(f"retrying {dropped} failed input(s) of {args.output}")
    if _stops_every_rank(comm, read_error):
        return 1
    done = {row["input"] for row in previous}
    skip = {i for i, name in enumerate(inputs) if name in done}
    previous_failures = sum(1 for row in previous if is_failure_row(row) and row["input"] in wanted)

    # The backend is chosen from the whole job, not from what is left of it: a resumed run must
    # use the build an uninterrupted one would (numpy and torch differ in float rounding, and a
    # resumed file is promised byte-identical). With nothing left to score it does not matter,
    # and numpy starts sooner.
    n_images = len(inputs) if len(skip) < len(inputs) else 0
    try:
        scorer = _build_scorer(args, device, n_images=n_images)
    except KeyboardInterrupt:  # while a large VLM loads, which is when people press Ctrl-C
        _err("interrupted while loading the model")
        return 130
    except (ValueError, OSError, ImportError) as err:
        _err(f"error: cannot load model {args.model or 'builtin'!r}: {err}")
        return 1
    mismatch = _model_mismatch(args.output, previous, scorer.model_id) if previous else None
    if _stops_every_rank(comm, mismatch):
        return 1
    if args.max_pixels is not None:
        scorer.max_pixels = args.max_pixels or None
    workers = _default_workers() if args.num_workers is None else args.num_workers
    batch_size = args.batch_size or scorer.default_batch_size
    if rank0 and skip:
        _err(
            f"resuming {args.output}: {len(skip)} of {len(inputs)} inputs already there, {len(inputs) - len(skip)} to go"
        )

    failures = 0
    collected = []
    writer = None
    open_error = None
    if rank0:
        if args.output:
            try:
                writer = open_writer(fmt, args.output)
            except OSError as err:
                open_error = f"cannot write -o {args.output}: {err.strerror or err}"
        elif fmt != "table":
            writer = open_writer(fmt, stream=sys.stdout)
    if _stops_every_rank(comm, open_error):
        return 1
    progress = rank0 and not args.quiet
    try:
        if comm is None:
            stream = scorer.iter_score(
                inputs, batch_size=batch_size, num_workers=workers, progress=progress, skip=skip
            )
            bar = None
        else:
            from ..parallel import iter_score_sharded

            bar = tqdm(
                total=len(inputs) - len(skip), disable=not progress, unit="img", dynamic_ncols=True
            )
            stream = iter_score_sharded(
                scorer,
                inputs,
                comm,
                batch_size=batch_size,
                num_workers=workers,
                skip=skip,
                on_result=lambda: bar.update(1),
            )
        for result in stream:
            if isinstance(result, ScoreFailure):
                failures += 1
                tqdm.write(f"deqa-score: failed: {result.input}: {result.error}", file=sys.stderr)
            if writer is not None:
                writer.write(result)
            else:
                collected.append(result)
        if bar is not None:
            bar.close()
    except KeyboardInterrupt:
        if writer is not None:
            writer.close()
        if args.output:
            _err(
                f"interrupted; results so far are in {args.output}: run the same command again to resume"
            )
        else:
            _err("interrupted")
        return 130
    if writer is not None:
        writer.close()
    if comm is not None:
        comm.finish()
    if not rank0:
        return 0
    if fmt == "table" and not args.output:
        sys.stdout.write(format_table(collected))
        sys.stdout.flush()
    total_failed = failures + previous_failures
    if total_failed:
        where = f" (see {args.output})" if args.output else ""
        _err(f"{total_failed} of {len(inputs)} inputs could not be scored{where}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
