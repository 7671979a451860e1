import hashlib
import os
import stat

import pytest

from deqa import fileio
from deqa.fileio import atomic_write, file_digest, weights_fingerprint, write_text_atomic


def test_file_digest_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    p = tmp_path / "x.bin"
    p.write_bytes(data)
    assert file_digest(p) == hashlib.sha256(data).hexdigest()
    # small blocks: the digest does not depend on how the file is read
    assert file_digest(p, "blake2b", digest_size=16, block_size=100) == hashlib.blake2b(data, digest_size=16).hexdigest()


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "progress.json"
    write_text_atomic(p, '{"done": 1}')
    write_text_atomic(p, '{"done": 2}')
    assert p.read_text() == '{"done": 2}'
    assert os.listdir(tmp_path) == ["progress.json"]
    with atomic_write(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_atomic_write_failure_keeps_old_content(tmp_path):
    p = tmp_path / "manifest.jsonl"
    p.write_text("old\n")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(p) as f:
            f.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["manifest.jsonl"]


def test_atomic_write_uses_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_atomic_write_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "a", "a"):
            pass


def test_weights_fingerprint_follows_the_weights_not_the_folder(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert weights_fingerprint(a) == ""  # no weight file
    blob = os.urandom(1 << 20)
    (a / "model.safetensors").write_bytes(blob)
    (a / "config.json").write_text("{}")
    (b / "model.safetensors").write_bytes(blob)  # a copy elsewhere, without the config
    tag = weights_fingerprint(a)
    assert len(tag) == 12 and weights_fingerprint(b) == tag
    (b / "model.safetensors").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))  # one bit of one weight
    assert weights_fingerprint(b) != tag
    (b / "model.safetensors").write_bytes(blob)
    (b / "adapter_model.bin").write_bytes(b"x")  # another weight file
    assert weights_fingerprint(b) != tag
    # Large files by their size and evenly spaced samples: a change in a sample is seen (the file's
    # last bytes are always in one), and so is another size.
    monkeypatch.setattr(fileio, "_WHOLE_UP_TO", 1 << 16)
    big = weights_fingerprint(a)
    (a / "model.safetensors").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    assert weights_fingerprint(a) != big
    (a / "model.safetensors").write_bytes(blob + b"\0")  # another size
    assert weights_fingerprint(a) not in (big, "")


def test_a_damaged_weights_file_is_an_error_naming_it(tmp_path):
    from deqa.fileio import read_weights

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")  # a header cut short
    for framework in ("numpy", "pt"):
        with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors file"):
            read_weights(bad, framework)
