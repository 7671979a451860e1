import hashlib
import os
import stat

import pytest

from deqa.fileio import atomic_write, file_digest, write_text_atomic


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
