"""The receiving end of a transfer, run on the receiving host as ``python3 -c <this file> PATH OFFSET``.

Writes its stdin into PATH from byte OFFSET on (the bytes before it arrived in an earlier, interrupted transfer), past
the page cache where the file system allows (O_DIRECT: a replica is cold data, and the DR host's memory is for the
workloads that fail over to it), and hashes what it writes as it writes it. At the end it flushes the file to storage
and prints ``<size of PATH> <SHA-256 of PATH>``; the bytes before OFFSET are read back from storage into that hash.

Hashing here spares the receiving host a second pass: before, the replica was read back from disk after the
transfer, which on the lab's DR host took as long as the transfer itself. One thread reads the stream while another
hashes and writes the block before it.

Only the standard library, and nothing newer than Python 3.7: it runs on the hosts, not beside dcctl.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import queue
import sys
import threading

BLOCK = 4 * 2**20
ALIGN = 4096  # O_DIRECT wants offsets, lengths and buffers on this boundary


def open_direct(path: str, flags: int) -> tuple[int, bool]:
    """(fd, direct?): O_DIRECT where the file system takes it (tmpfs does not), else the page cache."""
    try:
        return os.open(path, flags | getattr(os, "O_DIRECT", 0), 0o600), hasattr(os, "O_DIRECT")
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return os.open(path, flags, 0o600), False


def hash_prefix(path: str, length: int, digest: hashlib._Hash, buf: mmap.mmap) -> None:
    """The first ``length`` bytes of ``path``, as the storage holds them, into ``digest``."""
    fd, _ = open_direct(path, os.O_RDONLY)
    try:
        done = 0
        while done < length:
            # whole ALIGN blocks (O_DIRECT reads no less): the file ends at ``length``, so the last read comes up short
            want = min(BLOCK, -(-(length - done) // ALIGN) * ALIGN)
            n = min(os.preadv(fd, [memoryview(buf)[:want]], done), length - done)
            if n <= 0:
                raise OSError(errno.EIO, f"shorter than the {length} bytes that arrived before")
            digest.update(memoryview(buf)[:n])
            done += n
    finally:
        os.close(fd)


def receive(path: str, offset: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    buffers = [mmap.mmap(-1, BLOCK) for _ in range(3)]  # page-aligned, as O_DIRECT wants
    if offset:
        hash_prefix(path, offset, digest, buffers[0])
    direct, direct_ok = open_direct(path, os.O_WRONLY | os.O_CREAT)
    cached = os.open(path, os.O_WRONLY)  # for blocks O_DIRECT cannot take (an unaligned start or end)
    free: queue.Queue[mmap.mmap | None] = queue.Queue()
    full: queue.Queue[tuple[mmap.mmap, int, int] | None] = queue.Queue()
    failed: list[OSError] = []
    for buf in buffers:
        free.put(buf)

    def hash_and_write() -> None:
        try:
            while True:
                item = full.get()
                if item is None:
                    return
                buf, at, n = item
                block = memoryview(buf)[:n]
                digest.update(block)
                aligned = direct_ok and at % ALIGN == 0 and n % ALIGN == 0
                fd = direct if aligned else cached
                written = 0
                while written < n:
                    written += os.pwrite(fd, block[written:], at + written)
                free.put(buf)
        except OSError as exc:
            failed.append(exc)
            free.put(None)

    worker = threading.Thread(target=hash_and_write)
    worker.start()
    at = offset
    try:
        while True:
            item = free.get()
            if item is None:  # the writer failed
                break
            buf = item
            # the first block ends on a BLOCK boundary, so a resumed transfer's later blocks are aligned again
            want = BLOCK - at % BLOCK
            n = 0
            while n < want:
                got = os.readv(0, [memoryview(buf)[n:want]])  # stdin, unbuffered
                if not got:
                    break
                n += got
            if n:
                full.put((buf, at, n))
                at += n
            if n < want:  # end of the stream
                break
    finally:
        full.put(None)
        worker.join()
    if failed:
        raise failed[0]
    os.fsync(cached)  # the file's data, whichever descriptor wrote it, and its size
    size = os.fstat(cached).st_size
    os.close(direct)
    os.close(cached)
    return size, digest.hexdigest()


def main(argv: list[str]) -> int:
    try:
        size, sha256 = receive(argv[0], int(argv[1]))
    except OSError as exc:
        sys.stderr.write(f"dcctl writer: {argv[0]}: {exc.strerror or exc}\n")
        return 1
    sys.stdout.write(f"{size} {sha256}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
