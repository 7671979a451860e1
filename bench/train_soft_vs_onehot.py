"""Soft labels vs one-hot labels on the synthetic blur/noise task (tiny random VLM, CPU).

Trains configs/train/tiny_cpu.yaml once per (label method, seed) -- everything identical except
the KL / CE targets built by ``deqa.levels.soft_labels(method=...)`` -- and reports the held-out
SRCC / PLCC of the best checkpoint, the error of the predicted score and how well the predicted
spread matches the raters' (the synthetic std is 0.5 on the 1-5 scale for every image).

    python bench/train_soft_vs_onehot.py --out outputs/bench/soft_vs_onehot
    python bench/train_soft_vs_onehot.py --methods moment onehot --seeds 0 1 2
    python bench/train_soft_vs_onehot.py --set fidelity_weight=0      # KL + CE only, no fidelity

Results are appended to ``<out>/results.jsonl`` as each run finishes (a rerun skips finished
runs) and summarised as a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deqa.jsonl import JsonlWriter, iter_jsonl

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "train" / "tiny_cpu.yaml"


def _prepare(out: Path, data_seed: int) -> tuple[Path, Path]:
    from deqa.models.tiny import build_tiny_vlm
    from deqa.training.synthetic import make_synthetic_task

    model = out / "tiny-qwen2_5_vl"
    if not (model / "config.json").is_file():
        build_tiny_vlm("qwen2_5_vl", model, text_initializer_range=0.1)
    data = out / f"synthetic-{data_seed}"
    if not (data / "val.jsonl").is_file():
        make_synthetic_task(data, seed=data_seed)
    return model, data


def _run(model: Path, data: Path, out: Path, method: str, seed: int, steps: int, overrides: list[str]) -> dict:
    from deqa.levels import LEVEL_VALUES
    from deqa.training.config import load_train_config
    from deqa.training.recipe import DeQARecipe

    run_dir = out / "runs" / f"{method}-seed{seed}"
    cfg = load_train_config(
        CONFIG,
        [
            f"model_name_or_path={model}",
            f"train_manifests=[{data / 'train.jsonl'}]",
            f"eval_manifest={data / 'val.jsonl'}",
            f"output_dir={run_dir}",
            f"label_method={method}",
            f"seed={seed}",
            f"max_steps={steps}",
            "report_to=none",
            "disable_tqdm=true",
            "save_total_limit=1",
            *overrides,
        ],
    )
    recipe = DeQARecipe(cfg)
    recipe.setup()
    start = time.perf_counter()
    recipe.train()
    seconds = time.perf_counter() - start
    trainer = recipe.trainer
    # the best checkpoint is loaded at the end: predict the held-out set once more with it
    pred = trainer.predict(trainer.eval_dataset)
    probs = np.asarray(pred.predictions, dtype=np.float64)
    values = np.asarray(LEVEL_VALUES)
    score = probs @ values
    std = np.sqrt(np.clip(probs @ values**2 - score**2, 0, None))
    metrics = pred.metrics
    return {
        "method": method,
        "seed": seed,
        "steps": steps,
        "overrides": overrides,
        "srcc": metrics["test_srcc"],
        "plcc": metrics["test_plcc"],
        "plcc_fitted": metrics["test_plcc_fitted"],
        "mae": metrics["test_mae"],
        "pred_std_mean": float(std.mean()),
        "train_seconds": round(seconds, 1),
    }


def _same(row: dict, method: str, seed: int, args) -> bool:
    return (row["method"], row["seed"], row["steps"], row.get("overrides", [])) == (
        method, seed, args.steps, args.overrides
    )


def _table(rows: list[dict]) -> str:
    lines = [
        "| labels | runs | held-out SRCC | PLCC | PLCC (logistic) | MAE (1-5) | mean predicted std (raters: 0.50) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        part = [r for r in rows if r["method"] == method]

        def stat(key, digits=3, part=part):
            v = np.array([r[key] for r in part])
            return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"

        lines.append(
            f"| {method} | {len(part)} | {stat('srcc')} | {stat('plcc')} | {stat('plcc_fitted')} | "
            f"{stat('mae')} | {stat('pred_std_mean', 2)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/soft_vs_onehot", help="work and result folder")
    parser.add_argument("--methods", nargs="+", default=["moment", "onehot"], help="deqa.levels.soft_labels methods")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic task")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="deqa-train override for every run, e.g. --set fidelity_weight=0 (repeatable)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # tiny matmuls; see BENCHMARKS.md
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = [row for _, row in iter_jsonl(results, skip_torn_tail=True)] if results.is_file() else []
    model, data = _prepare(out, args.data_seed)
    for method in args.methods:
        for seed in args.seeds:
            if any(_same(r, method, seed, args) for r in done):
                continue
            row = _run(model, data, out, method, seed, args.steps, args.overrides)
            print(json.dumps(row), flush=True)
            done.append(row)
            with JsonlWriter(results) as f:
                f.write(row)
    rows = [r for r in done if r["method"] in args.methods and r["seed"] in args.seeds and _same(r, r["method"], r["seed"], args)]
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.steps} steps, data seed {args.data_seed}, overrides {args.overrides}\n")
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
