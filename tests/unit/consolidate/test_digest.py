"""The content digest: equal for equal guest-visible content, whatever the allocation; different otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dcctl.consolidate.digest import CHUNK, digest_file, remote_command


def raw(path: Path, size: int, writes: dict[int, bytes]) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)
    return path


def test_holes_and_written_zeros_digest_alike(tmp_path: Path) -> None:
    sparse = raw(tmp_path / "a", 8 * CHUNK, {3 * CHUNK + 5: b"data"})
    dense = raw(tmp_path / "b", 8 * CHUNK, {0: bytes(3 * CHUNK + 5), 3 * CHUNK + 5: b"data", 4 * CHUNK: bytes(CHUNK)})
    assert digest_file(str(sparse)) == digest_file(str(dense))


def test_any_changed_byte_or_size_changes_it(tmp_path: Path) -> None:
    base = digest_file(str(raw(tmp_path / "a", 8 * CHUNK, {CHUNK: b"data"})))
    assert digest_file(str(raw(tmp_path / "b", 8 * CHUNK, {CHUNK: b"date"}))) != base
    assert digest_file(str(raw(tmp_path / "c", 8 * CHUNK, {2 * CHUNK: b"data"}))) != base  # same bytes, elsewhere
    assert digest_file(str(raw(tmp_path / "d", 9 * CHUNK, {CHUNK: b"data"}))) != base
    assert digest_file(str(raw(tmp_path / "e", 8 * CHUNK, {}))) != base


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")
def test_the_remote_command_digests_a_qcow2_like_its_raw_copy(tmp_path: Path) -> None:
    image = raw(tmp_path / "disk.raw", 16 * CHUNK, {5 * CHUNK: os.urandom(3 * CHUNK)})
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(image), str(qcow2)], check=True)
    command = remote_command(str(qcow2), str(tmp_path / "scratch.raw"))
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == digest_file(str(image))
    assert not (tmp_path / "scratch.raw").exists()
