"""Both ends of a DR transfer, run for real in a shell: the receiver writes what arrives past the page cache and
checksums it as it writes, a resumed transfer's checksum covers the whole file (the bytes before the resume read
back), and the sender's checksum of its file is the same figure."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import pytest

from dcctl.dr.transfer import hostside, receive_command

DATA = bytes(range(256)) * (10 * 2**20 // 256) + b"odd tail"  # 10 MiB and a few bytes: an unaligned end


def receive(command: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", command], input=data, capture_output=True, check=False)


def resident(path: Path) -> int:
    """Bytes of ``path`` in the page cache."""
    out = subprocess.run(["fincore", "-bn", "-o", "RES", str(path)], capture_output=True, check=True)
    return int(out.stdout.decode().strip() or 0)


def test_the_receiver_reports_the_size_and_checksum_of_what_it_wrote_past_the_page_cache(tmp_path: Path) -> None:
    part = tmp_path / "replica" / "p1.qcow2.part"  # its directory is made too
    done = receive(receive_command(str(part), 0, len(DATA)), DATA)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == [str(len(DATA)), f"crc32:{zlib.crc32(DATA):08x}"]
    assert resident(part) < len(DATA) // 2  # O_DIRECT: at most the unaligned tail went through the cache
    assert part.read_bytes() == DATA


@pytest.mark.parametrize("place", ["disk", "memory"])
def test_a_resumed_transfer_hashes_the_whole_file(tmp_path: Path, place: str) -> None:
    root = tmp_path if place == "disk" else Path("/dev/shm")  # tmpfs refuses O_DIRECT: the writer falls back
    part = root / f"dcctl-test-{tmp_path.name}.part"
    try:
        cut = 3 * 2**20 + 4097  # a cut link leaves an unaligned part
        first = receive(receive_command(str(part), 0, len(DATA)), DATA[:cut])
        assert first.stdout.decode().split()[0] == str(cut)
        rest = receive(receive_command(str(part), cut, len(DATA)), DATA[cut:])
        assert rest.returncode == 0, rest.stderr
        assert rest.stdout.decode().split() == [str(len(DATA)), f"crc32:{zlib.crc32(DATA):08x}"]
        assert part.read_bytes() == DATA
    finally:
        part.unlink(missing_ok=True)


def test_a_part_shorter_than_the_resume_offset_is_a_clear_error(tmp_path: Path) -> None:
    part = tmp_path / "p.part"
    part.write_bytes(b"x" * 100)
    done = receive(receive_command(str(part), 4096, 8192), b"y" * 4096)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().startswith(f"dcctl receive: {part}: shorter than the 4096 bytes")
    assert b"Traceback" not in done.stderr


def test_the_sender_checksums_its_file_as_the_receiver_does(tmp_path: Path) -> None:
    source = tmp_path / "staged.qcow2"
    source.write_bytes(DATA)
    done = subprocess.run(["/bin/sh", "-c", hostside("checksum", str(source))], capture_output=True, check=True)
    assert done.stdout.decode().split() == [str(len(DATA)), f"crc32:{zlib.crc32(DATA):08x}"]


def test_a_host_without_python3_is_told_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        ["/bin/sh", "-c", receive_command(str(tmp_path / "p.part"))],
        input=b"",
        capture_output=True,
        check=False,
        env={"PATH": str(tmp_path)},  # no python3 there
    )
    assert done.returncode == 3 and b"needs python3" in done.stderr
