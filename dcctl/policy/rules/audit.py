"""Audit and secrets: logs kept at least six months; credentials never written into an inventory."""

from __future__ import annotations

from collections.abc import Iterator

from dcctl.diagnostics import Severity
from dcctl.inventory import Inventory
from dcctl.policy.rule import Finding, rule
from dcctl.standards import Standards


@rule(
    "audit-retention-minimum",
    Severity.ERROR,
    "Audit records are kept at least six months",
    "Cybersecurity Law art. 21(3) (网络日志不少于六个月); GB/T 22239-2019 安全审计",
)
def retention(inv: Inventory, standards: Standards) -> Iterator[Finding]:
    """The Cybersecurity Law requires network logs to be kept no less than six months, and MLPS 2.0 asks that audit
    records be protected from deletion. Six calendar months are at most 184 days, so `audit.retention_days` may be
    longer, never shorter."""
    p = inv.province
    minimum = standards.minimum_audit_retention_days
    if p is not None and p.audit.retention_days < minimum:
        yield Finding(
            f"audit.retention_days is {p.audit.retention_days}; the law requires at least {minimum}",
            p.audit.where("retention_days"),
            hint=f"set 'retention_days: {minimum}' or more",
        )


@rule(
    "secrets-not-in-inventory",
    Severity.ERROR,
    "No credentials in the inventory",
    "GB/T 22239-2019 身份鉴别 and 数据保密性; inventories live in version control",
)
def no_secrets(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """Inventories are shared, reviewed and kept in version control; a password, token or secret written there is
    leaked to everyone who can read the repository. Credentials belong in clouds.yaml (OS_CLIENT_CONFIG_FILE), in SSH
    keys referenced by path, or in environment variables. Any key that names a credential, and any URL with a
    password in it, is refused (and never copied into dcctl's state, logs or reports)."""
    for where, what in inv.secret_keys:
        yield Finding(
            f"{what}; dcctl never reads secrets from an inventory",
            where,
            hint="remove it: OpenStack credentials go in clouds.yaml (cloud: <name>), SSH uses key files, "
            "anything else an environment variable",
        )
