"""Scoring throughput: deqa's VLMScorer against the naive per-image ``generate`` path.

The naive path is what most IQA-with-VLM scripts do: for each image, decode it, run the
processor, call ``model.generate(max_new_tokens=1, output_scores=True)`` (batch 1, logits over
the whole vocabulary) and softmax the five level logits. deqa's path decodes and preprocesses in
DataLoader workers, batches with left padding, runs one forward with ``logits_to_keep=1`` and
reads five logits. Both read the same numbers (the script checks the scores agree).

CPU, tiny random model (what BENCHMARKS.md reports for the sandbox):

    python bench/score_throughput.py --family qwen2_5_vl --images 64 --batch-size 16

GPU, full-size Qwen2.5-VL-7B architecture from its published config, random weights (nothing
downloaded), 448x448 images, bf16; reports images/s, MFU (FLOPs counted with
torch.utils.flop_counter on one batch) and peak memory:

    python bench/score_throughput.py --full-size qwen2_5_vl_7b --device cuda --dtype bf16 \\
        --images 512 --batch-size 32 --num-workers 8 --naive-images 32

Prints one JSON object (``--json``) or a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deqa.imageio import load_image
from deqa.models.config import DeQAConfig
from deqa.models.prompt import build_prompt_text, encode_batch
from deqa.scoring import VLMScorer

from _common import QWEN2_5_VL, machine, peak_tflops, qwen2_5_vl_config


def build_full_size(name: str, device: torch.device, dtype: torch.dtype):
    """The full-size architecture with random weights, plus a processor with the real image
    settings and the tiny deqa tokenizer (only the prompt's words are needed)."""
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from deqa.models.tiny import _FAMILY_SPECS, build_tiny_tokenizer

    tok = build_tiny_tokenizer(**_FAMILY_SPECS["qwen2_5_vl"].tokenizer)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in {
        "image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>",
    }.items()}  # fmt: skip
    text_ids = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
    config = qwen2_5_vl_config(name, text_extra=text_ids, **ids)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    processor = Qwen2_5_VLProcessor(
        # Qwen2.5-VL's published preprocessor: 3136 .. 12,845,056 pixels, 14-px patches, 2x2 merge.
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": 3136, "longest_edge": 12845056}
        ),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=tok.chat_template,
    )
    return model.eval(), processor, f"{name} architecture (random weights)"


def build_tiny(
    family: str, dtype: torch.dtype, device: torch.device, vocab_size: int | None = None
):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from deqa.models.tiny import build_tiny_vlm

    path = build_tiny_vlm(family, Path(tempfile.mkdtemp()) / family, vocab_size=vocab_size)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device).eval()
    vocab = model.config.get_text_config().vocab_size
    return model, AutoProcessor.from_pretrained(path), f"tiny random {family} (vocab {vocab})"


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(str(p))
    return paths


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_scores(
    model, processor, cfg, level_ids, paths, device, dtype
) -> tuple[list[float], float]:
    """Per image: decode, process, generate one token with scores; returns (scores, seconds)."""
    text = build_prompt_text(processor, cfg)
    tok = processor.tokenizer
    add_special = not (tok.bos_token and text.startswith(tok.bos_token))
    values = torch.tensor(cfg.level_values, dtype=torch.float64)
    scores = []
    _sync(device)
    start = time.perf_counter()
    for p in paths:
        img = load_image(p)
        inputs = processor(
            text=[text], images=[[img]], return_tensors="pt", add_special_tokens=add_special
        )
        inputs = {
            k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            # logits_to_keep=0: logits at every position, as generate computed them before
            # transformers learned to keep only the last one (and as most IQA scripts still do).
            out = model.generate(
                **inputs, max_new_tokens=1, do_sample=False, output_scores=True, return_dict_in_generate=True,
                pad_token_id=tok.pad_token_id, logits_to_keep=0,
            )  # fmt: skip
        probs = torch.softmax(out.scores[0][0, level_ids].double().cpu(), dim=-1)
        scores.append(float(probs @ values))
    _sync(device)
    return scores, time.perf_counter() - start


def scorer_scores(scorer, paths, batch_size, num_workers, device) -> tuple[list[float], float]:
    _sync(device)
    start = time.perf_counter()
    results = list(scorer.iter_score(paths, batch_size=batch_size, num_workers=num_workers))
    _sync(device)
    return [r.score for r in results], time.perf_counter() - start


def flops_per_image(scorer, paths, batch_size) -> float:
    """Forward FLOPs per image, counted by torch on one real batch."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = scorer.make_collate()([load_image(p) for p in paths[:batch_size]])
    counter = FlopCounterMode(display=False)
    with counter:
        scorer.level_logits(batch)
    return counter.get_total_flops() / min(batch_size, len(paths))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--family", default="qwen2_5_vl", help="tiny model family (ignored with --full-size)"
    )
    p.add_argument(
        "--full-size",
        default=None,
        choices=sorted(QWEN2_5_VL),
        help="build a full-size architecture (published config, random weights) instead",
    )
    p.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="pad the tiny model's vocabulary to a real size, e.g. 151936",
    )
    p.add_argument("--images", type=int, default=64, help="images scored by deqa's path")
    p.add_argument(
        "--naive-images",
        type=int,
        default=None,
        help="images scored by the naive path (default: --images)",
    )
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="accelerator peak for MFU (default: by GPU name)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for both paths (default: torch's)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build the model on the meta device and report its size and image tokens; no timing "
        "(checks the --full-size set-up without a GPU)",
    )
    args = p.parse_args(argv)
    if args.threads:
        # A tiny model is all overhead: on a shared CPU, extra OpenMP threads mostly wait on each other.
        torch.set_num_threads(args.threads)

    device = torch.device("meta" if args.dry_run else args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    if args.full_size:
        model, processor, label = build_full_size(args.full_size, device, dtype)
    else:
        model, processor, label = build_tiny(args.family, dtype, device, args.vocab_size)
    cfg = DeQAConfig()
    probe = encode_batch(processor, [Image.new("RGB", (args.image_size, args.image_size))], cfg)
    size = {
        "model": label,
        "parameters": sum(t.numel() for t in model.parameters()),
        "image_size": args.image_size,
        "image_tokens": int((probe["input_ids"] == processor.image_token_id).sum()),
        "sequence_length": int(probe["input_ids"].shape[1]),
    }
    if args.dry_run:
        print(json.dumps(size))
        return 0
    scorer = VLMScorer(model, processor, cfg, model_id=label, device=device, dtype=dtype)
    n_naive = args.naive_images or args.images
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), max(args.images, n_naive), args.image_size)
        # Warm-up (allocator, kernels, worker start-up code paths) on both paths.
        naive_scores(model, processor, cfg, scorer.level_token_ids, paths[:2], device, dtype)
        scorer_scores(scorer, paths[: args.batch_size], args.batch_size, 0, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ours, t_ours = scorer_scores(
            scorer, paths[: args.images], args.batch_size, args.num_workers, device
        )
        peak_mem = (
            torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        )
        naive, t_naive = naive_scores(
            model, processor, cfg, scorer.level_token_ids, paths[:n_naive], device, dtype
        )
        flops = flops_per_image(scorer, paths, args.batch_size)
    n_cmp = min(len(naive), len(ours))
    agree = float(np.max(np.abs(np.array(naive[:n_cmp]) - np.array(ours[:n_cmp]))))
    ips_ours, ips_naive = args.images / t_ours, n_naive / t_naive
    peak = peak_tflops(device, args.peak_tflops)
    result = {
        **size,
        "machine": machine(device),
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "images_per_s_scorer": round(ips_ours, 2),
        "images_per_s_naive": round(ips_naive, 2),
        "speedup": round(ips_ours / ips_naive, 1),
        "max_score_diff": agree,
        "gflops_per_image": round(flops / 1e9, 3),
        "mfu": round(flops * ips_ours / (peak * 1e12), 4) if peak else None,
        "peak_memory_gib": round(peak_mem, 2) if peak_mem is not None else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"| {' | '.join(result)} |\n|{'---|' * len(result)}\n| {' | '.join(str(v) for v in result.values())} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
