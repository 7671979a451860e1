"""Run by the distributed tests under ``accelerate launch``: train with deqa-train's recipe, then
let every rank write its trainable weights and final loss, so the test can compare ranks.

    accelerate launch ... tests/_dist_train.py --config <yaml> [overrides...]
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

from deqa.cli.train import _parse
from deqa.training.recipe import DeQARecipe


def _skip_deepspeed_shm_op() -> None:
    # DeepSpeed's CPU accelerator JIT-compiles an optional shared-memory allreduce kernel at
    # init (~2 min on 2 cores, and this sandbox's unreliable mtimes make ninja rebuild it every
    # run). Marking it incompatible makes DeepSpeed use the plain gloo collectives instead.
    try:
        import deepspeed.ops
    except ImportError:
        return
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def main() -> int:
    torch.set_num_threads(1)
    _skip_deepspeed_shm_op()
    config = _parse(sys.argv[1:])
    recipe = DeQARecipe(config)
    recipe.setup()
    recipe.train()
    trainer = recipe.trainer
    rank = trainer.args.process_index
    model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    weights = {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    out = config.training.output_dir
    save_file(weights, os.path.join(out, f"rank{rank}.safetensors"))
    info = {
        "world_size": trainer.args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "global_step": trainer.state.global_step,
    }
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(info, f)
    recipe.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
