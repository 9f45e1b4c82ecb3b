"""openstacksdk and keystoneauth errors → dcctl's typed errors, with the cloud's own message kept and secrets scrubbed.

409, 429 and 5xx, and connections that failed or timed out, are ``TransientError`` (honouring ``Retry-After``); 404 is
``NotFound``; everything else is ``PermanentError`` with a hint. No message ever carries an auth dict or a secret: the
translation scrubs every secret value of the cloud's configuration from the text it builds.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterable
from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc

from dcctl.providers.base import NotFound, PermanentError, ProviderError, TransientError

#: HTTP statuses worth retrying: a conflict with an operation in progress, rate limits, and server-side hiccups.
TRANSIENT_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
#: auth options whose values are secrets (never shown, whatever the error)
SECRET_OPTIONS = ("password", "token", "application_credential_secret", "secret", "passcode", "totp")

_TAGS = re.compile(r"<[^>]+>")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def secrets_of(auth: Any) -> list[str]:
    """The secret values in an auth dict (to scrub them from any text), longest first."""
    found: list[str] = []
    if isinstance(auth, dict):
        for key, value in auth.items():
            if isinstance(value, str) and any(s in key.lower() for s in SECRET_OPTIONS) and len(value) >= 4:
                found.append(value)
            elif isinstance(value, dict):
                found.extend(secrets_of(value))
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _remote_message(exc: BaseException) -> str:
    """The cloud's own explanation, without HTML and without the SDK's boilerplate."""
    details = getattr(exc, "details", None)
    text = str(details) if details else str(getattr(exc, "message", "") or exc)
    text = _TAGS.sub(" ", text)
    return " ".join(text.split())[:500]


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, os_exc.HttpException):
        return exc.status_code
    if isinstance(exc, ksa_exc.HttpError):
        return exc.http_status
    return None


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        found = parse_retry_after(headers.get("Retry-After"))
        if found is not None:
            return found
    ksa = getattr(exc, "retry_after", 0)
    return float(ksa) if isinstance(ksa, int | float) and ksa > 0 else None


def translate(exc: BaseException, what: str, *, cloud: str, secrets: Iterable[str] = ()) -> ProviderError:
    """Map an SDK exception to a dcctl error about ``what`` (e.g. "creating server dcctl-x-web-1")."""
    secrets = list(secrets)
    if isinstance(exc, ProviderError):
        return exc
    status = _status(exc)
    remote = scrub(_remote_message(exc), secrets)
    message = f"{what} on cloud '{cloud}': {remote}"
    if status == 404:
        return NotFound(message)
    if status in TRANSIENT_STATUSES:
        return TransientError(message + f" (HTTP {status})", retry_after=_retry_after(exc))
    if status == 401:
        return PermanentError(
            f"{what}: cloud '{cloud}' refused dcctl's credentials (HTTP 401)",
            hint=f"check cloud '{cloud}' in clouds.yaml (OS_CLIENT_CONFIG_FILE); dcctl never reads credentials from "
            "the inventory",
        )
    if status == 403:
        return PermanentError(
            message + " (HTTP 403)",
            hint=f"the user of cloud '{cloud}' needs the admin role to manage tenancies (projects, quotas, flavors)",
        )
    if status == 413:
        return PermanentError(message + " (HTTP 413)", hint="a quota of the tenancy is too small: raise it in YAML")
    if status is not None:
        return PermanentError(message + f" (HTTP {status})")
    if isinstance(exc, ksa_exc.RetriableConnectionFailure | ksa_exc.ConnectionError):
        return TransientError(f"{what}: cannot reach cloud '{cloud}': {remote}")
    if isinstance(exc, os_exc.ResourceTimeout):
        return TransientError(message)
    if isinstance(exc, os_exc.ConfigException | ksa_exc.MissingRequiredOptions | ksa_exc.NoMatchingPlugin):
        return PermanentError(
            f"{what}: cloud '{cloud}' is not configured: {remote}",
            hint="name the cloud in clouds.yaml (set OS_CLIENT_CONFIG_FILE to its path, e.g. "
            "$(scripts/openstack-lab clouds) for the lab)",
        )
    if isinstance(exc, ksa_exc.EndpointNotFound | os_exc.EndpointNotFound):
        return PermanentError(message, hint="the cloud's service catalog lacks a service dcctl needs")
    return PermanentError(message)


SDK_ERRORS: tuple[type[BaseException], ...] = (os_exc.SDKException, ksa_exc.ClientException)
