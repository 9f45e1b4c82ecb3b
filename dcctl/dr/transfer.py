"""One file from one host to another over OpenSSH, verified end to end.

The sending host streams its file straight into ``ssh`` (no pipe: ``ssh`` reads the file itself), from the byte an
earlier, interrupted transfer reached. On the receiving host ``writer.py`` writes what arrives past the page cache and
hashes it as it writes; the sending host hashes its file meanwhile. The transfer is good when both SHA-256s and the
sizes agree: one pass over the data on each host, where a digest after the transfer (reading the copy back) took as
long again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dcctl.dr.ssh import Ssh, q

WRITER = (Path(__file__).parent / "writer.py").read_text()


@dataclass(frozen=True)
class Sent:
    """How a transfer ended: the sender's exit code and error output, the SHA-256 of the file it sent, and what the
    receiving host wrote (its file's size and SHA-256; ``None`` when its writer did not finish)."""

    rc: int
    error: str
    sha256: str
    received: tuple[int, str] | None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.received is not None and self.received[1] == self.sha256


def receive_command(path: str, offset: int = 0, size: int | None = None) -> str:
    """The receiving host's side: ``path`` from byte ``offset`` on, ``size`` bytes in all (when known).

    The file's blocks are reserved before they arrive (keeping its size, which says how far a transfer got): ext4
    allocating as it goes held a stream to ~470 MiB/s on the lab, reserved ~590."""
    p = q(path)
    reserve = f"fallocate -n -o {offset} -l {size - offset} {p} 2>/dev/null; " if size and size > offset else ""
    return (
        "command -v python3 >/dev/null || { echo 'the receiving host needs python3 (dcctl writes and verifies "
        "with it): install it there' >&2; exit 3; }; "
        f"mkdir -p {q(str(PurePosixPath(path).parent))} && : >> {p} && "
        f"{reserve}python3 -I -S -c {q(WRITER)} {p} {offset}"
    )


def send(
    sender: Ssh, path: str, offset: int, remote: list[str], receive: str, *, timeout: float, hash_timeout: float
) -> Sent:
    """Stream ``path`` on the ``sender``'s host from byte ``offset`` into ``remote`` (an ``ssh`` command line to the
    receiving host) running ``receive`` (``receive_command``), hashing ``path`` meanwhile."""
    ssh = " ".join(q(a) for a in remote)
    # dd moves the offset of the descriptor it shares with ssh, and copies nothing
    command = f"{{ dd iflag=skip_bytes skip={offset} count=0 status=none && {ssh} {q(receive)}; }} < {q(path)}"
    with ThreadPoolExecutor(1) as pool:
        sha256 = pool.submit(sender.sha256, path, timeout=hash_timeout)
        rc, out, err = sender.run(command, check=False, timeout=timeout)
        sent = sha256.result()
    fields = out.split()
    received = (int(fields[0]), fields[1]) if rc == 0 and len(fields) == 2 and fields[0].isdigit() else None
    return Sent(rc, err.strip(), sent, received)
