"""SDK errors → dcctl's typed errors: what is retried (honouring Retry-After), what is not, and no secret leaks."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc

from dcctl.engine.retry import RetryPolicy, call_with_retry
from dcctl.providers.base import NotFound, PermanentError, TransientError
from dcctl.providers.openstack.errors import parse_retry_after, secrets_of, translate


def http_error(status: int, body: str = "", headers: dict[str, str] | None = None) -> os_exc.HttpException:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = body.encode()
    return os_exc.HttpException(message=f"HTTP {status}", response=response, details=body)


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30, abs=1.5)


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_conflicts_rate_limits_and_server_errors_are_transient(status: int) -> None:
    err = translate(http_error(status, "try later", {"Retry-After": "3"}), "creating server x", cloud="c")
    assert isinstance(err, TransientError)
    assert err.retry_after == 3.0
    assert "creating server x on cloud 'c'" in err.message and f"HTTP {status}" in err.message


def test_not_found_and_client_errors() -> None:
    assert isinstance(translate(http_error(404), "getting x", cloud="c"), NotFound)
    bad = translate(http_error(400, "Invalid input for field 'cidr'"), "creating subnet s", cloud="c")
    assert isinstance(bad, PermanentError) and "Invalid input for field 'cidr'" in bad.message
    forbidden = translate(http_error(403), "creating project p", cloud="c")
    assert isinstance(forbidden, PermanentError) and "admin role" in forbidden.hint


def test_a_refused_login_names_the_cloud_and_clouds_yaml_never_the_secret() -> None:
    secrets = secrets_of({"auth": {"username": "admin", "password": "s3cr3t-pw", "auth_url": "http://x"}})
    assert secrets == ["s3cr3t-pw"]
    exc = ksa_exc.Unauthorized(message="bad password s3cr3t-pw for admin")
    err = translate(exc, "observing b", cloud="dcctl-lab-admin", secrets=secrets)
    assert isinstance(err, PermanentError)
    assert "s3cr3t-pw" not in err.message + err.hint
    assert "clouds.yaml" in err.hint
    other = translate(http_error(400, "echo s3cr3t-pw"), "x", cloud="c", secrets=secrets)
    assert "s3cr3t-pw" not in other.message and "***" in other.message


def test_connection_failures_and_timeouts_are_transient() -> None:
    assert isinstance(translate(ksa_exc.ConnectFailure("refused"), "x", cloud="c"), TransientError)
    assert isinstance(translate(ksa_exc.ConnectTimeout("slow"), "x", cloud="c"), TransientError)
    assert isinstance(translate(os_exc.ResourceTimeout("slow"), "x", cloud="c"), TransientError)


def test_an_unknown_cloud_says_how_to_name_one() -> None:
    err = translate(os_exc.ConfigException("Cloud nope was not found."), "connecting", cloud="nope")
    assert isinstance(err, PermanentError) and "OS_CLIENT_CONFIG_FILE" in err.hint


def test_the_engine_waits_at_least_what_retry_after_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("dcctl.engine.retry.time.sleep", slept.append)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise translate(http_error(429, "slow down", {"Retry-After": "4"}), "listing", cloud="c")
        return "ok"

    result, attempts = call_with_retry(flaky, RetryPolicy(base_delay=0.01), deadline=time.monotonic() + 60)
    assert (result, attempts) == ("ok", 2)
    assert slept == [4.0]
