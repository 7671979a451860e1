"""Launch-based training tests on CPU: two-rank DDP, DeepSpeed ZeRO-2/3 (gloo), the multi-node config, scripts/train.sh.

Each runs real `accelerate launch` processes, so they are few and short (4 steps).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = ROOT / "configs" / "train" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def setup(tiny_vlm_path, tmp_path_factory):
    from deqa.training.synthetic import make_synthetic_task

    task = make_synthetic_task(tmp_path_factory.mktemp("synthetic-small"), n_train=64, n_val=16, seed=1)
    return tiny_vlm_path("qwen2_5_vl", text_initializer_range=0.1), task


def _overrides(setup, out, *extra):
    model, task = setup
    return [
        f"model_name_or_path={model}",
        f"train_manifests=[{task.train_manifest}]",
        f"eval_manifest={task.val_manifest}",
        f"output_dir={out}",
        "max_steps=4",
        "per_device_train_batch_size=2",
        "logging_steps=1",
        "eval_steps=2",
        "save_steps=2",
        "report_to=none",
        "disable_tqdm=true",
        *extra,
    ]


def _free_port() -> str:
    """A port nobody listens on now: each launch gets its own rendezvous port, so one test's ranks
    never meet another's, or a port a previous run left in use (accelerate's default is 29500)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _run(cmd, env, timeout=300):
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _ranks(out):
    info = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    weights = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    return info, weights


@pytest.fixture(scope="module")
def single_process_losses(setup, tmp_path_factory):
    """The same 4 steps in this process with the global batch (2 ranks x 2 pairs) on one rank."""
    from deqa.training.config import load_train_config
    from deqa.training.recipe import DeQARecipe

    out = tmp_path_factory.mktemp("single")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recipe = DeQARecipe(load_train_config(TINY, _overrides(setup, out, "per_device_train_batch_size=4")))
        recipe.setup()
        recipe.train()
    finally:
        torch.set_num_threads(threads)
    return [e["loss"] for e in recipe.trainer.state.log_history if "loss" in e]


def test_two_rank_ddp_on_cpu_keeps_ranks_identical(setup, single_process_losses, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        BIN / "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", _free_port(),
        ROOT / "tests" / "_dist_train.py", "--config", TINY, *_overrides(setup, out),
    ]
    _run([str(c) for c in cmd], _env(ACCELERATE_USE_CPU="1"))
    info, weights = _ranks(out)
    assert [i["world_size"] for i in info] == [2, 2] and info[0]["distributed_type"].endswith("MULTI_CPU")
    assert info[0]["global_step"] == 4
    assert weights[0].keys() == weights[1].keys() and weights[0]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), f"ranks differ at {name}"
    # the loss of the 2-rank run equals one process on the same global batch
    assert info[0]["losses"] == pytest.approx(single_process_losses, rel=1e-4)
    assert (out / "checkpoint-4" / "adapter_model.safetensors").is_file()


def test_train_sh_trains_a_checkpoint_that_deqa_score_loads(setup, tmp_path):
    out = tmp_path / "sh"
    _run(["bash", str(ROOT / "scripts" / "train.sh"), "cpu", "tiny_cpu", *_overrides(setup, out)], _env())
    ckpt = out / "checkpoint-4"
    assert (ckpt / "deqa_config.json").is_file()
    from deqa.cli.score import main as score_main

    _, task = setup
    scores = tmp_path / "scores.jsonl"
    assert score_main(["--model", str(ckpt), str(task.root / "val"), "-o", str(scores), "--format", "jsonl", "-q"]) == 0
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == 16 and all(1.0 <= r["score"] <= 5.0 for r in rows)
    from deqa.fileio import weights_fingerprint

    (model_id,) = {r["model"] for r in rows}
    assert model_id.startswith(f"{ckpt}@{weights_fingerprint(ckpt)}#float32-")  # the checkpoint, its weights, its settings


def test_train_sh_names_unknown_configs():
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train.sh"), "cpu", "no_such_recipe"],
        cwd=ROOT, env=_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 2 and "no config 'no_such_recipe'" in proc.stderr and "tiny_cpu" in proc.stderr


@pytest.mark.parametrize("config", ["deepspeed_zero2", "deepspeed_zero3", "deepspeed_zero3_offload"])
def test_deepspeed_on_cpu(setup, single_process_losses, tmp_path, config):
    """Every shipped DeepSpeed config, two ranks over gloo: the losses of one process on the same
    global batch. ZeRO-3 shards the weights too: the model is built under zero.Init, which the
    meta-device skeleton (module names, for the LoRA targets) must not go through (it crashed)."""
    pytest.importorskip("deepspeed")
    out = tmp_path / config
    cmd = [
        BIN / "accelerate", "launch", "--config_file", ROOT / "configs" / "accelerate" / f"{config}.yaml",
        "--num_processes", "2", "--main_process_port", _free_port(),
        ROOT / "tests" / "_dist_train.py", "--config", TINY, *_overrides(setup, out, "ddp_backend=gloo"),
    ]
    _run([str(c) for c in cmd], _env(), timeout=600)
    info, weights = _ranks(out)
    assert [i["distributed_type"] for i in info] == ["DistributedType.DEEPSPEED"] * 2
    assert [i["world_size"] for i in info] == [2, 2] and info[0]["global_step"] == 4
    assert info[0]["losses"] == pytest.approx(single_process_losses, rel=1e-4)
    if config == "deepspeed_zero2":
        for name in weights[0]:  # ZeRO-2 shards optimizer state and gradients, not the weights
            assert torch.equal(weights[0][name], weights[1][name]), f"ranks differ at {name}"
    assert (out / "deqa_config.json").is_file()
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert saved and all(t.numel() > 0 for t in saved.values())  # gathered, not rank-local shards


def test_multi_node_example_config_makes_one_job_of_its_nodes(tmp_path):
    """Two accelerate launches of the multi-node config, as on two machines (here both on this one,
    meeting at 127.0.0.1): one job of world size 2, not two one-node jobs (what accelerate does
    with a multi-node DeepSpeed config without deepspeed_multinode_launcher: standard)."""
    script = tmp_path / "ranks.py"
    script.write_text(
        "import json, os, sys\n"
        "import torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "t = torch.tensor([float(dist.get_rank() + 1)])\n"
        "dist.all_reduce(t)\n"
        "json.dump({'world_size': dist.get_world_size(), 'sum': t.item()},"
        " open(os.path.join(sys.argv[1], f'rank{dist.get_rank()}.json'), 'w'))\n"
        "dist.destroy_process_group()\n"
    )
    port = _free_port()
    procs = [
        subprocess.Popen([str(BIN / "accelerate"), "launch", "--config_file",
                          str(ROOT / "configs" / "accelerate" / "multi_node_example.yaml"),
                          "--main_process_ip", "127.0.0.1", "--main_process_port", port,
                          "--num_processes", "2", "--machine_rank", str(rank), str(script), str(tmp_path)],
                         cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]  # fmt: skip
    try:
        logs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"world_size": 2, "sum": 3.0}] * 2
