"""Commands on backend hosts over SSH (paramiko), with host keys verified against a known_hosts file.

A libvirt URI already names everything SSH needs (``qemu+libssh://root@host/system?keyfile=…&known_hosts=…``), so a
backend's URI is the single source of its SSH settings. Unknown or changed host keys are refused, never added.
"""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import paramiko

from dcctl.errors import DcctlError
from dcctl.providers.base import PermanentError, TransientError


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str
    port: int
    keyfile: str | None
    known_hosts: str

    @classmethod
    def from_uri(cls, uri: str) -> SshTarget:
        """The SSH side of a remote libvirt URI (qemu+ssh, qemu+libssh, qemu+libssh2)."""
        parts = urlsplit(uri)
        if not parts.scheme.startswith("qemu+") or "ssh" not in parts.scheme or not parts.hostname:
            raise DcctlError(
                f"backend URI {parts.scheme}://{parts.hostname or ''}/… is not reached over SSH",
                hint="DR replication runs over SSH: use a qemu+ssh:// or qemu+libssh:// URI",
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(
            host=parts.hostname,
            user=parts.username or "root",
            port=parts.port or 22,
            keyfile=query.get("keyfile"),
            known_hosts=query.get("known_hosts") or str(Path.home() / ".ssh" / "known_hosts"),
        )

    def openssh_command(self, *, destination: bool = True, shared_from: str | None = None) -> list[str]:
        """An OpenSSH client command line reaching this target with the same key and known_hosts (for host-to-host
        streams: fastest cipher with AES-NI, keepalives so a cut link fails in seconds, never prompting).

        ``shared_from`` names the host the command runs on: its streams to this target then share one connection
        (OpenSSH multiplexing, a root-only socket in /run/dcctl, kept 60 s after its last use), so a stream costs
        no key exchange — about 0.3 s each on a busy host."""
        args = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        args += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "ServerAliveInterval=1"]
        args += ["-o", "ServerAliveCountMax=3", "-o", "ConnectTimeout=10"]
        args += ["-c", "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"]
        if shared_from:
            args += ["-o", "ControlMaster=auto", "-o", f"ControlPath={CONTROL_DIR}/{shared_from}-%C"]
            args += ["-o", "ControlPersist=60"]
        if self.keyfile:
            args += ["-i", self.keyfile]
        args += ["-p", str(self.port)]
        return [*args, f"{self.user}@{self.host}"] if destination else args


#: where host-to-host stream connections keep their multiplexing sockets (on the host that opens them)
CONTROL_DIR = "/run/dcctl"


#: seconds to wait for a host's SSH to answer and authenticate
CONNECT_TIMEOUT = 15.0
#: commands running at once on one connection; more wait for a turn. sshd refuses a connection's sessions past its
#: MaxSessions (10 unless configured), and the servers of a DR run share one connection per host
CHANNELS = 8


class Ssh:
    """One SSH connection to a host; ``run`` executes a shell command line there (from several threads at once)."""

    def __init__(self, target: SshTarget, timeout: float = CONNECT_TIMEOUT) -> None:
        self.target = target
        self.channels = threading.BoundedSemaphore(CHANNELS)
        self.client = paramiko.SSHClient()
        try:
            self.client.load_host_keys(target.known_hosts)
        except OSError as exc:
            raise PermanentError(f"cannot read known_hosts {target.known_hosts}: {exc.strerror}") from None
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.client.connect(
                target.host,
                port=target.port,
                username=target.user,
                key_filename=target.keyfile,
                look_for_keys=target.keyfile is None,
                allow_agent=target.keyfile is None,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except paramiko.BadHostKeyException:
            raise PermanentError(
                f"the host key of {target.host} does not match {target.known_hosts}: refusing to connect",
                hint="if the host was reinstalled, verify its new key and update known_hosts",
            ) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise PermanentError(
                    f"{target.host} is not in {target.known_hosts}: dcctl connects only to known hosts",
                    hint="add the host's verified key to that known_hosts file",
                ) from None
            raise TransientError(f"SSH to {target.host} failed: {exc}") from None
        except (TimeoutError, OSError) as exc:
            raise TransientError(f"cannot reach {target.host} over SSH: {exc}") from None

    def __enter__(self) -> Ssh:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def run(self, command: str, *, timeout: float = 60.0, check: bool = True) -> tuple[int, str, str]:
        """Run ``command`` with /bin/sh, stdin from /dev/null; returns (exit code, stdout, stderr).

        ``timeout`` bounds the call from its turn on (see ``CHANNELS``): paramiko waits on a channel without limit once
        a link has died, so a watchdog closes the connection at the deadline and the call fails (transiently) instead
        of hanging.

        The channel gets no stdin file on purpose: closing one sends EOF outside paramiko's channel lock, so when
        the command has just ended it can reach sshd after the channel's CLOSE, and OpenSSH then drops the whole
        connection ("ieof packet referred to nonexistent channel") and every command sharing it fails.
        """
        with self.channels:
            rc, out, err = self._exec(command, timeout)
        if check and rc != 0:
            raise TransientError(
                f"on {self.target.host}: `{_short(command)}` exited {rc}: {err.strip()[-400:] or out.strip()[-400:]}"
            )
        return rc, out, err

    def _exec(self, command: str, timeout: float) -> tuple[int, str, str]:
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self.client.close()

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise paramiko.SSHException("the connection is closed")
            with _open_session(transport, timeout) as channel:
                channel.settimeout(timeout)
                channel.exec_command(f"sh -c {q(command)} </dev/null")
                out = channel.makefile("rb").read().decode(errors="replace")
                err = channel.makefile_stderr("rb").read().decode(errors="replace")
                rc = channel.recv_exit_status()
        except (paramiko.SSHException, OSError, TimeoutError, EOFError) as exc:
            why = f"no answer within {timeout:.0f}s" if expired.is_set() else str(exc) or type(exc).__name__
            raise TransientError(f"command on {self.target.host} failed: {why}") from None
        finally:
            watchdog.cancel()
        if expired.is_set():
            raise TransientError(f"command on {self.target.host} failed: no answer within {timeout:.0f}s")
        return rc, out, err


def _open_session(transport: paramiko.Transport, timeout: float) -> paramiko.Channel:
    """A new session channel. sshd refuses one past its MaxSessions (10 unless configured), counting sessions whose
    close it has not finished yet: a refused open is tried again until ``timeout``, a turn coming free meanwhile."""
    deadline, pause = time.monotonic() + timeout, 0.01
    while True:
        try:
            return transport.open_session(timeout=timeout)
        except paramiko.SSHException:  # ChannelException, or paramiko's plain one when another thread took it first
            if not transport.is_active() or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def q(value: str) -> str:
    return shlex.quote(value)


def _short(command: str) -> str:
    return command if len(command) < 120 else command[:117] + "..."
