"""A DR run's connections: each host's opened once however many servers ask, in the background; an opening error
reaches every server that asks; a connection nobody asked for is closed without waiting for it. The openers are
stand-ins (an SSH handshake is not the point here); the lab's DR tests run the real ones."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from dcctl.dr import links as links_mod
from dcctl.dr.links import Links
from dcctl.dr.ssh import SshTarget
from dcctl.providers.base import TransientError

TARGET = SshTarget("198.18.50.12", "root", 22, None, "/dev/null")
DOWN = SshTarget("198.18.50.99", "root", 22, None, "/dev/null")


class FakeSsh:
    opened: ClassVar[list[str]] = []
    release: ClassVar[threading.Event] = threading.Event()

    def __init__(self, target: SshTarget, timeout: float) -> None:
        if target.host == "198.18.50.77":  # a slow host: opens when the test says so
            FakeSsh.release.wait(5)
        if target is DOWN:
            raise TransientError(f"cannot reach {target.host} over SSH: timed out")
        FakeSsh.opened.append(target.host)
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeSsh.opened = []
    FakeSsh.release = threading.Event()
    monkeypatch.setattr(links_mod, "Ssh", FakeSsh)


def test_servers_asking_for_one_host_share_one_connection() -> None:
    with Links() as links:
        links.prefetch(ssh=[(TARGET, 15.0)])
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda _: links.ssh(TARGET), range(8)))
    assert FakeSsh.opened == ["198.18.50.12"]
    assert all(conn is got[0] for conn in got) and got[0].closed  # closed with the run


def test_an_opening_error_reaches_every_server_that_asks() -> None:
    with Links() as links:
        links.prefetch(ssh=[(DOWN, 10.0)])
        for _ in range(2):
            with pytest.raises(TransientError, match=r"cannot reach 198\.18\.50\.99"):
                links.ssh(DOWN)


def test_a_connection_nobody_asked_for_is_closed_once_open_without_waiting() -> None:
    slow = SshTarget("198.18.50.77", "root", 22, None, "/dev/null")
    links = Links()
    links.prefetch(ssh=[(slow, 15.0)])
    opened: list[Any] = []
    links._opened[("ssh", "root", slow.host, "22")].add_done_callback(lambda f: opened.append(f.result()))
    links.close()  # returns while the host is still opening
    assert opened == []
    FakeSsh.release.set()
    links._pool.shutdown(wait=True)
    assert len(opened) == 1 and opened[0].closed
