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
    conn = _connect(sock, deadline)
    conn.settimeout(0.5)
    tag = uuid.uuid4().hex[:8]
    try:
        buf = b""
        while f"READY-{tag}".encode() not in buf:  # the shell may still be starting: ask until it answers
            conn.sendall(f"echo READY-{tag}\n".encode())
            buf += _read(conn, deadline)
        conn.sendall(f"echo START-{tag}; {command}; echo DONE-{tag} rc=$?\n".encode())
        done = re.compile(rf"START-{tag}\r?\n(.*?)DONE-{tag} rc=(\d+)\r?\n".encode(), re.S)
        buf = b""
        while (found := done.search(buf)) is None:
            buf += _read(conn, deadline)
    finally:
        conn.close()
    output, rc = found.group(1).decode(errors="replace").replace("\r", ""), found.group(2).decode()
    if rc != "0":
        raise AssertionError(f"guest command failed (rc={rc}): {command}\n{output}")
    return output


def _connect(sock: Path, deadline: float) -> socket.socket:
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(sock))
            return conn
        except OSError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _read(conn: socket.socket, deadline: float) -> bytes:
    if time.monotonic() > deadline:
        raise TimeoutError("the guest did not answer in time")
    try:
        return conn.recv(65536)
    except TimeoutError:
        return b""
