"""Talk to a lab guest's shell on its second serial port (a unix socket on the host; see the lab guest's README)."""

from __future__ import annotations

import re
import socket
import time
import uuid
from pathlib import Path


def shell(sock: Path, command: str, timeout: float = 120.0) -> str:
    """Run ``command`` in the guest's busybox shell; return its output (raises if it fails or times out)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(sock))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    conn.settimeout(1.0)
    buf = b""
    try:
        ready = f"READY-{uuid.uuid4().hex[:8]}"
        while ready.encode() not in buf:  # the shell may still be starting: ask until it answers
            conn.sendall(f"echo {ready}\n".encode())
            buf += _read(conn, deadline)
        marker = f"DONE-{uuid.uuid4().hex[:8]}"
        conn.sendall(f"{command}; echo {marker} rc=$?\n".encode())
        buf = b""
        done = re.compile(rf"{marker} rc=(\d+)\r?\n".encode())
        while not done.search(buf):
            buf += _read(conn, deadline)
    finally:
        conn.close()
    text = buf.decode(errors="replace").replace("\r", "")
    head, _, tail = text.partition(f"{marker} rc=")
    rc = tail.split()[0] if tail.split() else "?"
    if rc != "0":
        raise AssertionError(f"guest command failed (rc={rc}): {command}\n{head}")
    return head


def _read(conn: socket.socket, deadline: float) -> bytes:
    if time.monotonic() > deadline:
        raise TimeoutError("the guest did not answer in time")
    try:
        return conn.recv(65536)
    except TimeoutError:
        return b""
