"""The connections of one DR run: SSH to each host it works on and libvirt to each source host, each opened once, in
the background as soon as the host is known, and shared by the servers' threads.

A run used to open three connections per server (two SSH, one libvirt), after it had observed where the servers run.
Opened while that observation runs, and once per host, they cost a run no time of its own (0.13 s of a 1.2 s
incremental point on the lab) and a host with many protected servers one handshake per kind instead of one per server.
A connection that fails is reported to each server that needs it; one no server needs is never waited for by the
run (the process, on exit, lets an opening end: at most its timeout, as the observation of that host takes). A
command's timeout closes its connection (``Ssh.run``): on a shared one the host's other commands fail with it, as
they would on the dead link a timeout almost always means.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from dcctl.dr.ssh import CONNECT_TIMEOUT, Ssh, SshTarget
from dcctl.inventory.model import LibvirtBackend
from dcctl.providers.libvirt.dr import DrHost

#: connections opened at once (each is mostly a network round trip or two)
OPENERS = 8


class Links:
    """Use as a context manager; ``ssh`` and ``libvirt`` may be called from several threads at once."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(OPENERS, thread_name_prefix="dr-link")
        self._opened: dict[tuple[str, ...], Future[Any]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, key: tuple[str, ...], opener: Callable[[], Any]) -> Future[Any]:
        with self._lock:
            if key not in self._opened:
                self._opened[key] = self._pool.submit(opener)
            return self._opened[key]

    def _ssh(self, target: SshTarget, timeout: float) -> Future[Any]:
        return self._open(("ssh", target.user, target.host, str(target.port)), lambda: Ssh(target, timeout=timeout))

    def _libvirt(self, backend: LibvirtBackend) -> Future[Any]:
        return self._open(("libvirt", backend.uri), lambda: DrHost(backend))

    def prefetch(self, *, ssh: Iterable[tuple[SshTarget, float]] = (), libvirt: Iterable[LibvirtBackend] = ()) -> None:
        """Start opening these connections; nothing waits for them until they are asked for."""
        for target, timeout in ssh:
            self._ssh(target, timeout)
        for backend in libvirt:
            self._libvirt(backend)

    def ssh(self, target: SshTarget, *, timeout: float = CONNECT_TIMEOUT) -> Ssh:
        """The run's SSH connection to ``target`` (its opening error, when it failed)."""
        conn: Ssh = self._ssh(target, timeout).result()
        return conn

    def libvirt(self, backend: LibvirtBackend) -> DrHost:
        """The run's libvirt connection to ``backend``'s host (its opening error, when it failed)."""
        host: DrHost = self._libvirt(backend).result()
        return host

    def close(self) -> None:
        """Close what was opened; a connection still opening is closed when it is (nobody waits for it)."""
        with self._lock:
            opened, self._opened = list(self._opened.values()), {}
        for future in opened:
            future.add_done_callback(_close)
        self._pool.shutdown(wait=False)


def _close(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()
