"""DeQA training throughput: samples/s, step time, peak memory and MFU of DeQATrainer steps.

Runs real ``DeQATrainer`` optimizer steps (LoRA on the language model, the DeQA losses,
gradient checkpointing, bf16 on GPU) on synthetic batches shaped exactly like the collator's:
one image per sequence with its image tokens, the chat prompt, the answer and the level
position. Inputs are synthetic so that the number is the model step, not image decoding
(the DataLoader overlaps decoding with the step in real runs).

Models: ``tiny`` (the test suite's tiny random Qwen2.5-VL; runs on CPU), ``qwen2_5_vl_3b`` /
``qwen2_5_vl_7b`` (built from the published Qwen2.5-VL-*-Instruct configs with random weights:
no download), or a local model folder (random weights from its config).

    python bench/train_throughput.py --model tiny --steps 30                     # CPU
    python bench/train_throughput.py --model qwen2_5_vl_7b --image-size 448 --batch-pairs 8
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml --num_processes 1 \\
        bench/train_throughput.py --model qwen2_5_vl_7b --image-size 448 --batch-pairs 8

Reported: pairs/s and images/s (each pair = 2 images), median step time, peak memory (GPU:
max allocated; CPU: max RSS), model GFLOP per step (:func:`training_flops`; recomputation by
gradient checkpointing is *not* counted, as in the usual MFU convention), MFU against
``--peak-tflops`` (default: the GPU's dense bf16 peak by name, e.g. 989 for H100/H200 SXM), and
the projected wall time of the KonIQ recipe (7,046 pairs x 3 epochs) at this rate.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import PEAK_BF16_TFLOPS, QWEN2_5_VL, machine, peak_tflops, qwen2_5_vl_config

ROOT = Path(__file__).resolve().parents[1]
KONIQ_PAIRS_PER_EPOCH = 7046
KONIQ_EPOCHS = 3

TEXT_TOKENS_BEFORE_IMAGE = 20  # system turn + "<|im_start|>user\n"
TEXT_TOKENS_AFTER_IMAGE = 22  # question, end of turn, "<|im_start|>assistant\n", answer prefix
ANSWER_TAIL = 3  # level token, ".", <|im_end|>


def _config(model: str):
    from transformers import AutoConfig

    if model in QWEN2_5_VL:
        return qwen2_5_vl_config(model)
    if model == "tiny":
        from deqa.models.tiny import build_tiny_vlm

        folder = Path(tempfile.mkdtemp(prefix="deqa-bench-tiny-"))
        build_tiny_vlm("qwen2_5_vl", folder, text_initializer_range=0.1)
        return AutoConfig.from_pretrained(folder)
    return AutoConfig.from_pretrained(model)


class SyntheticPairs(torch.utils.data.Dataset):
    """N index items; the pair sampler and the collator below turn them into model batches."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        return [int(k) for k in (key if isinstance(key, tuple) else (key,))]

    def sampler(self, *, seed: int, pairs: bool = True):
        from deqa.training.data import PairSampler

        return PairSampler([range(self.n)], seed=seed, pairs=pairs)


class SyntheticCollator:
    """Batches shaped like DeQACollator's for a Qwen2.5-VL config at ``image_size`` px."""

    def __init__(self, config, image_size: int, level_token_ids: list[int]):
        v = config.vision_config
        self.grid = image_size // v.patch_size  # patches per side
        self.patch_dim = v.in_channels * v.temporal_patch_size * v.patch_size**2
        self.n_image_tokens = self.grid * self.grid // v.spatial_merge_size**2
        self.config = config
        self.level_token_ids = level_token_ids
        self.vocab = config.get_text_config().vocab_size

    def __call__(self, items):
        n = sum(len(i) for i in items)
        pairs = sum(len(i) > 1 for i in items)
        c = self.config
        g = torch.Generator().manual_seed(int(items[0][0]))
        text = lambda k: torch.randint(10, min(self.vocab, 150000), (n, k), generator=g)  # noqa: E731
        image = torch.full((n, self.n_image_tokens), c.image_token_id)
        level = torch.tensor(self.level_token_ids)[torch.randint(0, 5, (n,), generator=g)][:, None]
        ids = torch.cat(
            [text(TEXT_TOKENS_BEFORE_IMAGE), torch.full((n, 1), c.vision_start_token_id), image,
             torch.full((n, 1), c.vision_end_token_id), text(TEXT_TOKENS_AFTER_IMAGE), level, text(ANSWER_TAIL - 1)],
            dim=1,
        )
        width = ids.shape[1]
        labels = torch.full_like(ids, -100)
        labels[:, width - ANSWER_TAIL :] = ids[:, width - ANSWER_TAIL :]
        probs = torch.softmax(torch.randn(n, 5, generator=g), dim=1)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == c.image_token_id).int(),
            "pixel_values": torch.randn(n * self.grid * self.grid, self.patch_dim, generator=g),
            "image_grid_thw": torch.tensor([[1, self.grid, self.grid]] * n),
            "labels": labels,
            "level_positions": torch.full((n,), width - ANSWER_TAIL),
            "level_probs": probs,
            "mos": probs @ torch.arange(1.0, 6.0),
            "mos_std": torch.full((n,), 0.6),
            "pair_a": torch.arange(pairs),
            "pair_b": torch.arange(pairs) + n - pairs,
        }


def training_flops(config, *, images: int, text_tokens: int, image_size: int, lora_params: int,
                   train_vision: bool) -> float:
    """Model FLOPs of one optimizer step (no recomputation), 2 FLOPs per multiply-add.

    Language model (frozen base + LoRA): forward 2 N T, backward through the frozen weights
    for the activation gradients 2 N T (no weight gradients), LoRA weights 6 N_lora T;
    attention scores and values 4 T^2 d per layer forward, x3 with backward.
    Vision tower: forward 2 N_v P (P = patches), and x3 if it is trained (frozen: no backward
    reaches it). Window attention in the vision tower is counted as full attention over each
    window (112 px windows = 64 patches) except the full-attention blocks.
    """
    t = config.get_text_config()
    v = config.vision_config
    d, layers = t.hidden_size, t.num_hidden_layers
    kv = t.num_key_value_heads * (d // t.num_attention_heads)
    lm_linear = layers * (d * (d + 2 * kv) + d * d + 3 * d * t.intermediate_size)
    tokens = images * text_tokens
    seq = text_tokens
    lm = 4 * lm_linear * tokens + 6 * lora_params * tokens + 3 * 4 * layers * seq * seq * d * images
    # vision tower
    patches = (image_size // v.patch_size) ** 2
    h = v.hidden_size
    vis_linear = v.depth * (4 * h * h + 3 * h * v.intermediate_size)
    merger = (h * v.spatial_merge_size**2) ** 2 + h * v.spatial_merge_size**2 * v.out_hidden_size
    window = min(patches, (v.window_size // v.patch_size) ** 2)
    full = len(v.fullatt_block_indexes)
    attn = 4 * h * patches * (full * patches + (v.depth - full) * window)
    vis = (2 * vis_linear * patches + 2 * merger * patches // v.spatial_merge_size**2 + attn) * images
    return lm + vis * (3 if train_vision else 1)


class _Timer:
    def __init__(self):
        self.times: list[float] = []
        self._start = 0.0

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer._start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.times.append(time.perf_counter() - timer._start)

        return StepTimer()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, qwen2_5_vl_3b, qwen2_5_vl_7b or a model folder")
    parser.add_argument("--image-size", type=int, default=None, help="px per side (default: 56 tiny, 448 otherwise)")
    parser.add_argument("--batch-pairs", type=int, default=8, help="pairs per device and step (2 images each)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--lora-r", type=int, default=128)
    parser.add_argument("--train-vision-tower", action="store_true", help="official recipe: vision tower trained too")
    parser.add_argument("--no-activation-checkpointing", action="store_true")
    parser.add_argument(
        "--peak-tflops", type=float, default=None,
        help="accelerator peak (bf16 dense) per device (default: by GPU name; 989, an H100/H200 SXM, with --flops-only)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs)")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument(
        "--flops-only", action="store_true",
        help="build the model on the meta device and print the FLOPs per step (no run; any machine)",
    )
    args = parser.parse_args(argv)

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from deqa.training.config import DEFAULT_LORA_TARGETS, DeQATrainingArguments
    from deqa.training.model import VISION_TOWER_NAMES, find_submodule
    from deqa.training.trainer import DeQATrainer

    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(args.threads)
    image_size = args.image_size or (56 if args.model == "tiny" else 448)
    config = _config(args.model)
    dtype = torch.bfloat16 if cuda else torch.float32
    with torch.device("meta" if args.flops_only else "cuda" if cuda else "cpu"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    vision = find_submodule(model, VISION_TOWER_NAMES)
    lora = LoraConfig(
        r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05, target_modules=DEFAULT_LORA_TARGETS,
        modules_to_save=[vision] if args.train_vision_tower else None,
    )
    model = get_peft_model(model, lora)
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    first = min(1000, config.get_text_config().vocab_size - 5)  # any five ordinary text tokens
    level_ids = list(range(first, first + 5))
    collator = SyntheticCollator(config, image_size, level_ids)
    text_tokens = TEXT_TOKENS_BEFORE_IMAGE + TEXT_TOKENS_AFTER_IMAGE + 2 + collator.n_image_tokens + ANSWER_TAIL
    if args.flops_only:
        peak = args.peak_tflops or PEAK_BF16_TFLOPS["H100"]
        flops = training_flops(
            config, images=2 * args.batch_pairs, text_tokens=text_tokens, image_size=image_size,
            lora_params=lora_params, train_vision=args.train_vision_tower,
        )
        params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
        step_at = {f"step_s_at_{int(m * 100)}pct_mfu": round(flops / (m * peak * 1e12), 4) for m in (0.3, 0.5)}
        print(json.dumps({
            "model": args.model, "parameters": params, "lora_parameters": lora_params,
            "tokens_per_sequence": text_tokens, "images_per_step": 2 * args.batch_pairs,
            "model_tflop_per_step": round(flops / 1e12, 2), **step_at,
            "koniq_recipe_minutes_at_50pct_mfu": round(
                KONIQ_PAIRS_PER_EPOCH * KONIQ_EPOCHS / args.batch_pairs * step_at["step_s_at_50pct_mfu"] / 60, 1
            ),
        }, indent=2))
        return 0

    from deqa.models.config import DeQAConfig

    out = tempfile.mkdtemp(prefix="deqa-bench-train-")
    targs = DeQATrainingArguments(
        output_dir=out, max_steps=args.steps + args.warmup, per_device_train_batch_size=args.batch_pairs,
        learning_rate=2e-5, lr_scheduler_type="cosine", warmup_steps=0.03, bf16=cuda, use_cpu=not cuda,
        activation_checkpointing=not args.no_activation_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="no", eval_strategy="no", report_to="none", logging_steps=10**6, disable_tqdm=True,
        dataloader_num_workers=0, load_best_model_at_end=False,
    )
    timer = _Timer()
    trainer = DeQATrainer(
        model=model, args=targs, train_dataset=SyntheticPairs(4096), data_collator=collator,
        level_token_ids=level_ids, deqa_config=DeQAConfig(base_model=args.model), callbacks=[timer.callback()],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    times = timer.times[args.warmup :]
    step = statistics.median(times)
    world = trainer.args.world_size
    pairs_per_s = args.batch_pairs * world / step
    images = 2 * args.batch_pairs
    flops = training_flops(
        config, images=images, text_tokens=text_tokens, image_size=image_size, lora_params=lora_params,
        train_vision=args.train_vision_tower,
    )
    memory = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    peak = peak_tflops(torch.device("cuda" if cuda else "cpu"), args.peak_tflops)
    result = {
        "model": args.model,
        "device": machine(torch.device("cuda" if cuda else "cpu")),
        "distributed": str(trainer.accelerator.distributed_type),
        "world_size": world,
        "image_size": image_size,
        "tokens_per_sequence": text_tokens,
        "batch_pairs_per_device": args.batch_pairs,
        "lora_r": args.lora_r,
        "train_vision_tower": args.train_vision_tower,
        "activation_checkpointing": not args.no_activation_checkpointing,
        "step_s_median": round(step, 4),
        "pairs_per_s": round(pairs_per_s, 2),
        "images_per_s": round(2 * pairs_per_s, 2),
        "peak_memory_gib": round(memory / 2**30, 3),
        "model_gflop_per_step": round(flops / 1e9, 3),
        "mfu": round(flops / step / (peak * 1e12), 4) if peak else None,
        "koniq_recipe_hours": round(KONIQ_PAIRS_PER_EPOCH * KONIQ_EPOCHS / pairs_per_s / 3600, 3),
        "torch": torch.__version__,
    }
    if trainer.args.process_index == 0:
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
