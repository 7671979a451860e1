"""Speed of the built-in degradation model: throughput at 224 px and cold start of one scoring process.

    python bench/baseline_speed.py [--threads 2] [--batch-size 16] [--n 256] [--out speed.json]

Both runtimes of the network are measured: numpy (the default without ``--device``, no torch
import) and torch (``--device cpu``); the numpy network also with other chunk sizes of its
data-parallel batches (``deqa.baselines.numpy_parallel.CHUNK``). Throughput twice each: the network alone on a uint8 batch
(what the 20 img/s goal is about) and the whole Scorer pipeline (decode + resize + network) on
the bundled example JPEG. Cold start = wall time of a fresh ``python -m deqa.cli.score
example.jpg`` process (what ``deqa-score photo.jpg`` runs), with and without ``--device cpu``; a
probe process that loads the built-in model and scores through the Python API reports its
in-process time and whether torch, transformers or peft were imported. Every timing is the
median and the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deqa" / "assets" / "examples" / "example.jpg"

_COLD = """
import sys, time
t0 = time.perf_counter()
from deqa import load_scorer
r = load_scorer(None).score(sys.argv[1])[0]
print(round(time.perf_counter() - t0, 3), r.score, "torch" in sys.modules,
      "transformers" in sys.modules or "peft" in sys.modules)
"""


def _rates(run, repeats: int) -> dict[str, float]:
    """Images/s of ``run`` (which returns how many images it processed): median and best of
    ``repeats``. On a CPU shared with other jobs the best run is the closest to the machine's
    own speed; the median shows what a busy machine gives."""
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        n = run()
        rates.append(n / (time.perf_counter() - t))
    return {"median": round(statistics.median(rates), 1), "best": round(max(rates), 1)}


def _seconds(times: list[float]) -> dict[str, float]:
    """Median and best (shortest) of repeated timings, in seconds."""
    return {"median": round(statistics.median(times), 2), "best": round(min(times), 2)}


def _gmacs(net, size: int) -> float:
    """Multiply-accumulates of conv and linear layers for one image, counted with forward hooks."""
    import torch

    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out.numel() * k
        else:
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n", type=int, default=256, help="images per throughput measurement")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median and best reported)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from deqa.baselines import load_baseline
    from deqa.baselines.numpy_parallel import set_num_threads

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # numpy's BLAS pool, held to the same thread count as torch's
    set_num_threads(args.threads)  # and the numpy runtime's data-parallel threads
    paths = [str(EXAMPLE)] * args.n
    runtimes, numpy_net = {}, None
    for backend in ("numpy", "torch"):
        scorer = load_baseline(None, backend=backend)
        size = scorer.cfg.image_size
        shape = (args.batch_size, size, size, 3) if backend == "numpy" else (args.batch_size, 3, size, size)
        batch = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        batch = batch if backend == "numpy" else torch.from_numpy(batch)
        reps = max(1, args.n // args.batch_size)

        def net_run(scorer=scorer, batch=batch, reps=reps):
            for _ in range(reps):
                scorer.predict(batch)
            return reps * args.batch_size

        with torch.inference_mode():
            scorer.predict(batch)  # warm-up (oneDNN kernel selection, BLAS buffers)
            net_ips = _rates(net_run, args.repeats)
        pipe_ips = _rates(lambda scorer=scorer: len(list(scorer.iter_score(paths, batch_size=args.batch_size))), args.repeats)
        runtimes[backend] = {"images_per_s": net_ips, "pipeline_images_per_s": pipe_ips}
        if backend == "numpy":
            numpy_net = (scorer, batch, net_run)

    # Why numpy_parallel.CHUNK is what it is: the numpy network with other chunk sizes (a chunk as
    # large as the batch = no data parallelism, every op as numpy and BLAS run it alone).
    import deqa.baselines.numpy_parallel as npp

    scorer, batch, numpy_run = numpy_net  # the network measured above, same batch
    shipped, chunks = npp.CHUNK, {}
    for chunk in sorted({1, 2, 4, 8, args.batch_size}):
        npp.CHUNK = chunk
        scorer.predict(batch)
        chunks[f"chunk_{chunk}"] = _rates(numpy_run, args.repeats)
    npp.CHUNK = shipped

    # Why the first stage is a stride-4 patchify conv: the same network with stride 1 or 2 stems
    # (random weights; speed does not depend on them).
    from deqa.baselines.degradation import DegradationModelConfig, DegradationNet

    stems = {}
    for stride in (1, 2, 4):
        net = DegradationNet(DegradationModelConfig(stem_stride=stride)).eval().to(memory_format=torch.channels_last)
        x = torch.rand(args.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
        n_rep = 1 if stride == 1 else 4

        def run(net=net, x=x, n_rep=n_rep):
            for _ in range(n_rep):
                net(x)
            return n_rep * args.batch_size

        with torch.inference_mode():
            net(x)
            ips = _rates(run, args.repeats)
        stems[f"stem_stride_{stride}"] = {"gmac_per_image": round(_gmacs(net, size), 3), "images_per_s": ips}

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    colds, wall, cli, cli_torch, torch_only = [], [], [], [], []
    torch_leaked = leaked = False
    for _ in range(args.repeats):
        # The floor of any cold start here: a new process that imports torch and nothing else. On a
        # shared host it swings (1.7 s to 4 s seen on the same machine); the cold starts above it
        # are only comparable between runs together with it.
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, env=env, check=True)
        torch_only.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _COLD, str(EXAMPLE)], capture_output=True, text=True, env=env, check=True)
        wall.append(time.perf_counter() - t)
        inner, _, had_torch, imported = out.stdout.split()
        colds.append(float(inner))
        torch_leaked |= had_torch == "True"
        leaked |= imported == "True"
        for extra, into in (([], cli), (["--device", "cpu"], cli_torch)):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "deqa.cli.score", str(EXAMPLE), "-q", *extra],
                           capture_output=True, env=env, check=True)
            into.append(time.perf_counter() - t)
    res = {
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, torch {torch.__version__}",
        "threads": args.threads,
        "size": size,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        # the default runtime (numpy) at the top level; both runtimes under "runtimes"
        "runtime": "numpy",
        "images_per_s": runtimes["numpy"]["images_per_s"],
        "pipeline_images_per_s": runtimes["numpy"]["pipeline_images_per_s"],
        "runtimes": runtimes,
        "cold_start_deqa_score_s": _seconds(cli),
        "cold_start_deqa_score_device_cpu_s": _seconds(cli_torch),
        "cold_start_api_process_s": _seconds(wall),
        "cold_start_in_process_s": _seconds(colds),
        "import_torch_process_s": _seconds(torch_only),
        "torch_imported": torch_leaked,
        "transformers_or_peft_imported": leaked,
        "stems": stems,
        "numpy_chunk": shipped,
        "numpy_chunks": chunks,
        "load_avg_1min": os.getloadavg()[0],
    }
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
