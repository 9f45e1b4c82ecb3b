"""The content digest of a disk: what the guest sees, equal for equal content whatever the image's format, allocation
or cluster layout — so a source disk and its copy on another host can be compared without moving either.

The image is first converted to a sparse raw file on its own host (``qemu-img convert -O raw``, which leaves zero
runs as holes); the digest is SHA-256 over the disk's size and, for each 1 MiB chunk that holds a non-zero byte, the
chunk's index and its own SHA-256. Holes are skipped with ``SEEK_DATA``/``SEEK_HOLE`` and all-zero chunks are left
out, so the work is proportional to the data the disk holds, not to its size.

This file is self-contained (standard library only): ``remote_command`` runs it on a host with ``python3 -c``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shlex
import sys

CHUNK = 1 << 20


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of the regions of a file that may hold data; the whole file where holes cannot be found."""
    out = []
    pos = 0
    try:
        while pos < size:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after pos
            return out
        return [(0, size)]
    return out


def digest_file(path: str) -> str:
    """The content digest of a raw disk image file."""
    h = hashlib.sha256()
    zero = bytes(CHUNK)
    with open(path, "rb") as f:  # noqa: PTH123  (runs on hosts with nothing but the standard library)
        size = os.fstat(f.fileno()).st_size
        h.update(b"size:" + size.to_bytes(8, "big"))
        done = -1
        for start, end in data_extents(f.fileno(), size):
            for index in range(max(start // CHUNK, done + 1), (end - 1) // CHUNK + 1):
                f.seek(index * CHUNK)
                chunk = f.read(CHUNK)
                if chunk != zero[: len(chunk)]:
                    h.update(index.to_bytes(8, "big") + hashlib.sha256(chunk).digest())
                done = index
    return h.hexdigest()


def remote_command(image: str, scratch: str) -> str:
    """A shell command that prints the content digest of ``image`` (any format qemu-img reads), using the raw file
    ``scratch`` (removed afterwards) on the same host."""
    with open(__file__, encoding="utf-8") as f:  # noqa: PTH123
        source = f.read()
    q = shlex.quote
    return (
        f"qemu-img convert -U -O raw {q(image)} {q(scratch)} && python3 -c {q(source)} {q(scratch)}; "
        f"rc=$?; rm -f {q(scratch)}; exit $rc"
    )


if __name__ == "__main__":
    print(digest_file(sys.argv[1]))
