"""Sharded scoring: plan sharding, in-order merge on rank 0, and a real 2-process CPU run."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from eval_helpers import BrightnessScorer
from PIL import Image

from deqa.parallel import LocalComm, iter_score_sharded, shard_plan
from deqa.results import ScoreFailure


class ThreadComm:
    """``world_size`` ranks as threads in one process, with real collective semantics."""

    def __init__(self, rank, shared):
        self.rank, self.world_size, self.shared = rank, shared["world"], shared

    def _sync(self):
        self.shared["barrier"].wait(timeout=30)

    def broadcast(self, obj):
        if self.rank == 0:
            self.shared["box"] = obj
        self._sync()
        out = self.shared["box"]
        self._sync()
        return out

    def gather(self, obj):
        self.shared["slots"][self.rank] = obj
        self._sync()
        out = list(self.shared["slots"]) if self.rank == 0 else None
        self._sync()
        return out

    def finish(self):
        self._sync()


def run_ranks(world, fn):
    shared = {"world": world, "barrier": threading.Barrier(world), "slots": [None] * world}
    outputs, errors = [None] * world, []

    def target(rank):
        try:
            outputs[rank] = fn(ThreadComm(rank, shared))
        except Exception as err:  # surfaced below
            errors.append(err)
            shared["barrier"].abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return outputs


@pytest.fixture
def inputs():
    imgs = [Image.new("RGB", (4, 4), (v, v, v)) for v in range(0, 250, 25)]  # 10 images
    imgs.insert(4, "/no/such/file.png")
    return imgs


def test_shard_plan_round_robin():
    plan = [[0, 1], [2, 3], [4, 5], [6]]
    assert shard_plan(plan, 2, 0) == [[0, 1], [4, 5]]
    assert shard_plan(plan, 2, 1) == [[2, 3], [6]]
    assert shard_plan(plan, 3, 2) == [[4, 5]]
    with pytest.raises(ValueError, match="rank 2 is outside a world of 2"):
        shard_plan(plan, 2, 2)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("skip", [set(), {0, 1, 2, 5, 9}])
def test_sharded_equals_single_process_in_input_order(inputs, world, reverse, skip):
    scorer = BrightnessScorer(reverse_batches=reverse)
    want = [r.to_dict() for r in scorer.iter_score(inputs, batch_size=3, skip=skip)]
    outs = run_ranks(
        world,
        lambda comm: [
            r.to_dict()
            for r in iter_score_sharded(
                scorer, inputs, comm, batch_size=3, skip=skip if comm.rank == 0 else (), chunk=2
            )
        ],
    )
    assert outs[0] == want
    assert all(o == [] for o in outs[1:])
    names = [r["input"] for r in outs[0]]
    assert len(names) == len(inputs) - len(skip)
    assert any("no such file" in r.get("error", "") for r in outs[0]) == (4 not in skip)


def test_local_comm_is_the_plain_pipeline(inputs):
    scorer = BrightnessScorer()
    counted = []
    out = list(
        iter_score_sharded(
            scorer, inputs, LocalComm(), batch_size=4, on_result=lambda: counted.append(1)
        )
    )
    assert [r.input for r in out] == [r.input for r in scorer.iter_score(inputs, batch_size=4)]
    assert len(counted) == len(inputs)
    assert isinstance(out[4], ScoreFailure)


@pytest.mark.slow  # ~25 s on 2 cores: the launcher and two processes each import transformers
def test_two_cpu_processes_under_accelerate_match_one_process(tiny_vlm_path, tmp_path):
    """A real gloo run: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(9):
        Image.fromarray(rng.integers(0, 256, (30 + 5 * i, 40, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    model = str(tiny_vlm_path("qwen2_5_vl"))
    common = ["--model", model, str(folder), "-b", "2", "--num-workers", "0", "-q"]
    env = dict(
        os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), ACCELERATE_USE_CPU="1"
    )
    accelerate = Path(sys.executable).with_name("accelerate")
    two = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "deqa.cli.score", *common, "-o", str(tmp_path / "two.jsonl")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    from deqa.cli.score import main

    assert main([*common, "-o", str(tmp_path / "one.jsonl")]) == 0
    rows_two = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    rows_one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert (
        [r["input"] for r in rows_two]
        == [r["input"] for r in rows_one]
        == [str(folder / f"{i}.png") for i in range(9)]
    )
    # Same batches, but 1 thread per process vs 2: equal up to float round-off.
    np.testing.assert_allclose(
        [r["score"] for r in rows_two], [r["score"] for r in rows_one], atol=1e-5
    )
