"""deqa-score -o FILE safety: unrelated files untouched, no resume across models, the same backend
after a resume, widened CSV headers, and option errors (--device, --max-pixels) as one line.

A stand-in scorer replaces the model (no weights, no torch), so these run in about a second."""

import pytest
from PIL import Image

import deqa.load
from deqa.cli.score import main
from deqa.results import ScoreResult
from deqa.scorer import Scorer


class StandIn(Scorer):
    needs_torch = False

    def __init__(self, model_id="stand-in"):
        self.model_id = model_id

    def predict(self, batch):
        return [
            ScoreResult("", 4.0, 0.75, "good", self.model_id, details={"blur": 0.5}) for _ in batch
        ]


class Calls(list):
    model_id: dict


@pytest.fixture
def loads(monkeypatch):
    """Every load_scorer call deqa-score makes, as (model, kwargs); returns StandIn(model_id)."""
    calls = Calls()
    model_id = {"value": "stand-in"}

    def fake(model=None, **kwargs):
        calls.append((model, kwargs))
        return StandIn(model_id["value"])

    monkeypatch.setattr(deqa.load, "load_scorer", fake)
    calls.model_id = model_id
    return calls


@pytest.fixture
def images(tmp_path):
    names = []
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 90, 90)).save(tmp_path / f"{i}.png")
        names.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "empty.png").write_bytes(b"")  # fails to decode: a failure row
    return names, str(tmp_path / "empty.png")


def _run(*argv):
    return main([*map(str, argv), "--num-workers", "0", "-q"])


@pytest.mark.parametrize(
    "name, content",
    [
        ("important.csv", b"name,value\nalpha,1\nbeta,2"),
        ("notes.csv", b"only one line"),
        ("notes.jsonl", b"only one line"),
        ("list.json", b'[{"input": "a.png"}]'),
    ],
)
def test_an_unrelated_output_file_is_refused_untouched(tmp_path, images, loads, capsys, name, content):
    out = tmp_path / name
    out.write_bytes(content)
    assert _run(images[0][0], "-o", out) == 1
    assert out.read_bytes() == content
    err = capsys.readouterr().err
    assert f"error: {out}" in err and "cannot resume into this file" in err
    assert loads == []  # refused before any model loads


def test_resuming_into_another_models_file_is_an_error(tmp_path, images, loads, capsys):
    good, empty = images
    out = tmp_path / "z.jsonl"
    loads.model_id["value"] = "model-a"
    assert _run(*good, "-o", out) == 0
    before = out.read_bytes()
    loads.model_id["value"] = "model-b"
    assert _run(*good, "-o", out) == 1
    assert out.read_bytes() == before
    err = capsys.readouterr().err
    assert f"-o {out} holds scores from model 'model-a', but this run scores with 'model-b'" in err
    assert "Pick another -o file" in err and "already there" not in err
    # Failure rows name no model: a file of failures only resumes with any model.
    fails = tmp_path / "f.jsonl"
    assert _run(empty, "-o", fails) == 2
    loads.model_id["value"] = "model-c"
    assert _run(empty, *good, "-o", fails) == 2
    assert "1 of 4 inputs already there, 3 to go" in capsys.readouterr().err


def test_one_model_folder_spelt_two_ways_resumes(tmp_path, images, loads, monkeypatch, capsys):
    good, _ = images
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    loads.model_id["value"] = str(tmp_path / "ckpt")
    assert _run(good[0], "-o", "s.jsonl") == 0
    loads.model_id["value"] = "./ckpt"
    assert _run(*good, "-o", "s.jsonl") == 0
    assert "1 of 3 inputs already there, 2 to go" in capsys.readouterr().err
    # With the weights' fingerprint in the id (VLM folders): same weights resume, others are refused.
    loads.model_id["value"] = f"{tmp_path / 'ckpt'}@0123456789ab+{tmp_path / 'ckpt'}@ba9876543210"
    assert _run(good[0], "-o", "t.jsonl") == 0
    loads.model_id["value"] = "./ckpt@0123456789ab+ckpt@ba9876543210"
    assert _run(*good, "-o", "t.jsonl") == 0
    assert "1 of 3 inputs already there, 2 to go" in capsys.readouterr().err
    loads.model_id["value"] = "./ckpt@0123456789ab+ckpt@ffffffffffff"  # the adapter retrained in place
    assert _run(*good, "-o", "t.jsonl") == 1
    assert "holds scores from model" in capsys.readouterr().err


def test_a_resumed_run_uses_the_backend_of_the_whole_job(tmp_path, images, loads, monkeypatch):
    # 3 inputs with the torch threshold at 3 (and a GPU): torch. A resume with 2 of them left must use
    # torch too (numpy and torch differ in float rounding: the file would not be the same).
    good, _ = images
    monkeypatch.setattr(deqa.load, "TORCH_FROM_N_IMAGES", 3)
    monkeypatch.setattr(deqa.load, "_accelerator", lambda: "cpu")  # as with a GPU, torch on the CPU here
    torch_device = deqa.load.baseline_device(None, 3)
    assert torch_device == "cpu"
    assert _run(*good, "-o", tmp_path / "full.jsonl") == 0
    out = tmp_path / "resumed.jsonl"
    assert _run(good[0], "-o", out) == 0  # a 1-image job: numpy
    assert _run(*good, "-o", out) == 0  # 2 left of a 3-image job
    assert _run(*good, "-o", out) == 0  # nothing left: no scoring, the quick start is fine
    assert [kw["device"] for _, kw in loads] == [torch_device, None, torch_device, None]
    assert deqa.load.baseline_device(None, 2) is None  # what "2 left" would have picked


def test_csv_started_by_failures_only_keeps_the_detail_columns(tmp_path, images, loads):
    good, empty = images
    resumed, one_run = tmp_path / "f1.csv", tmp_path / "f2.csv"
    assert _run(empty, "-o", resumed) == 2
    assert _run(empty, good[0], "-o", resumed) == 2
    assert _run(empty, good[0], "-o", one_run) == 2
    header = resumed.read_text().splitlines()[0]
    assert header == "input,score,score_0_1,level,std,detail_blur,model,error"
    assert resumed.read_bytes() == one_run.read_bytes()


@pytest.mark.parametrize(
    "device, message",
    [
        ("foo", "--device foo: not a device name"),
        ("cuda", "--device cuda: CUDA is not available on this machine"),
        ("cuda:1", "--device cuda:1: CUDA is not available on this machine"),
    ],
)
def test_a_bad_device_is_a_usage_error(images, loads, capsys, monkeypatch, device, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as without an NVIDIA driver
    assert _run(images[0][0], "--device", device) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert loads == []


def test_a_cuda_index_past_the_last_gpu_is_a_usage_error(images, loads, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _run(images[0][0], "--device", "cuda:2") == 1
    assert "--device cuda:2: this machine has 2 CUDA device(s), cuda:0 to cuda:1" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-5", "-1"])
def test_negative_max_pixels_is_refused_by_the_parser(images, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        _run(images[0][0], "--max-pixels", value)
    assert exit_.value.code == 1
    assert f"argument --max-pixels: must be >= 0 (0 = no limit), got {value}" in capsys.readouterr().err


def test_max_pixels_zero_still_means_no_limit(images, loads, capsys):
    assert _run(images[0][0], "--max-pixels", "0") == 0
    assert images[0][0] in capsys.readouterr().out



def _on_two_ranks(monkeypatch, *argv):
    """deqa-score's exit codes on two ranks (threads with real collective semantics)."""
    import threading

    from test_parallel import run_ranks

    import deqa.parallel

    comms = {}
    monkeypatch.setattr(deqa.parallel, "distributed_comm", lambda: (comms[threading.get_ident()], "cpu"))

    def rank(comm):
        comms[threading.get_ident()] = comm
        return _run(*argv)

    return run_ranks(2, rank)


def test_a_refused_output_file_stops_every_rank(tmp_path, images, loads, monkeypatch, capsys):
    """Under accelerate launch only rank 0 reads -o; when it refuses the file, the other ranks must
    stop too instead of waiting for rank 0 at the next collective (30 s barrier timeout here)."""
    good, _ = images
    out = tmp_path / "notes.csv"
    out.write_text("name,value\nalpha,1\n")  # not a deqa result file: refused untouched
    assert _on_two_ranks(monkeypatch, *good, "-o", out) == [1, 1]
    assert out.read_text() == "name,value\nalpha,1\n"
    assert capsys.readouterr().err.count("not a deqa result file") == 1  # said once, by rank 0


def test_an_unwritable_output_stops_every_rank(tmp_path, images, loads, monkeypatch, capsys):
    good, _ = images
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "scores.jsonl"  # its folder is a file: rank 0 cannot open it
    assert _on_two_ranks(monkeypatch, *good, "-o", out) == [1, 1]
    assert capsys.readouterr().err.count("cannot write -o") == 1


@pytest.mark.parametrize(("written", "asked"), [("csv", "jsonl"), ("jsonl", "csv"), ("jsonl", "json")])
def test_a_file_of_another_format_is_named_as_such(tmp_path, images, loads, capsys, written, asked):
    good, _ = images
    out = tmp_path / "scores.out"
    assert _run(good[0], "-o", out, "--format", written) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert _run(*good, "-o", out, "--format", asked) == 1
    err = capsys.readouterr().err
    assert f"holds deqa's {written} output, but this run writes {asked}: pass --format {written}" in err
    assert out.read_bytes() == before
