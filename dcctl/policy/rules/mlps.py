"""MLPS 2.0 (GB/T 22239-2019): backup and DR by level, platform level, and level-4 resource pools."""

from __future__ import annotations

from collections.abc import Iterator

from dcctl.diagnostics import Severity
from dcctl.inventory import Inventory
from dcctl.inventory.model import format_duration
from dcctl.policy.rule import Finding, rule
from dcctl.standards import Standards


@rule(
    "mlps-dr-required",
    Severity.ERROR,
    "MLPS level 3 and 4 systems replicate off-site in real time",
    "GB/T 22239-2019 安全计算环境 › 数据备份恢复 (L3-CES1-30: 异地实时备份; L4: 异地灾难备份中心, 实时切换)",
)
def dr_required(inv: Inventory, standards: Standards) -> Iterator[Finding]:
    """Level 3 requires off-site real-time backup of important data to a backup site (异地实时备份); level 4 adds an
    off-site DR center with real-time switchover of the business application. So a level 3 or 4 workload needs a
    `dr:` policy whose RPO fits "real time", and at level 4 an RTO fit for switchover. The bounds are kept as data in
    dcctl/data/standards.yaml (30 minutes RPO, 2 hours RTO, dcctl's reading of "real time"; see its source note)."""
    for _, w in inv.workloads.values():
        req = standards.mlps_level(w.mlps_level)
        if not req.dr_required:
            continue
        if w.dr is None:
            yield Finding(
                f"workload '{w.id}' is MLPS level {w.mlps_level} but has no DR policy",
                w.where("mlps_level"),
                hint="add 'dr: {rpo: 15m, rto: 2h}' (replicated to the provincial DR site)",
                address=f"workload:{w.id}",
            )
            continue
        if req.rpo_max is not None and w.dr.rpo > req.rpo_max:
            yield Finding(
                f"workload '{w.id}' (MLPS level {w.mlps_level}) has RPO {format_duration(w.dr.rpo)}; "
                f"real-time off-site backup means at most {format_duration(req.rpo_max)}",
                w.dr.where("rpo"),
                hint=f"set 'rpo:' to {format_duration(req.rpo_max)} or less",
                address=f"workload:{w.id}",
            )
        if req.rto_max is not None and w.dr.rto > req.rto_max:
            yield Finding(
                f"workload '{w.id}' (MLPS level {w.mlps_level}) has RTO {format_duration(w.dr.rto)}; "
                f"real-time switchover means at most {format_duration(req.rto_max)}",
                w.dr.where("rto"),
                hint=f"set 'rto:' to {format_duration(req.rto_max)} or less",
                address=f"workload:{w.id}",
            )


@rule(
    "mlps-platform-level",
    Severity.ERROR,
    "A platform hosts no system above its own level",
    "GB/T 22239-2019 云计算安全扩展要求 › 网络架构 (云计算平台不承载高于其安全保护等级的业务应用系统)",
)
def platform_level(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """The cloud extension of MLPS 2.0: a cloud platform may not host business systems of a higher protection level
    than its own. A pinned workload's backend must be rated at the workload's level or above; an unpinned workload
    is placed only on such backends, so at least one of its zone must exist in its data center."""
    for t, w in inv.workloads.values():
        candidates = [b for b in inv.candidate_backends(t, w) if t.zone in b.zones]
        if candidates and not any(b.level >= w.mlps_level for b in candidates):
            best = max(b.level for b in candidates)
            where = f"backend '{w.backend}' is" if w.backend else f"the {t.zone.value} backends of '{t.hosted_in}' are"
            yield Finding(
                f"workload '{w.id}' is MLPS level {w.mlps_level}, but {where} rated at most level {best}",
                w.where("backend" if w.backend else "mlps_level"),
                hint="place it on a backend rated at its level or above, or re-grade the platform",
                address=f"workload:{w.id}",
            )


@rule(
    "mlps-l4-dedicated-pool",
    Severity.ERROR,
    "Level 4 systems run on a dedicated resource pool, and only they do",
    "GB/T 22239-2019 云计算安全扩展要求 (第四级: 应为第四级业务应用系统划分独立的资源池)",
)
def dedicated_pool(inv: Inventory, standards: Standards) -> Iterator[Finding]:
    """At level 4 the cloud extension requires an independent resource pool for the level-4 business systems. A level 4
    workload is placed only on backends marked `dedicated: true` (rated level 4), and a dedicated pool hosts nothing
    else: a lower-level system pinned to it would share the pool the standard keeps apart."""
    for t, w in inv.workloads.values():
        needs_pool = standards.mlps_level(w.mlps_level).dedicated_pool
        candidates = [b for b in inv.candidate_backends(t, w) if t.zone in b.zones]
        if needs_pool and candidates and not any(b.dedicated and b.level >= w.mlps_level for b in candidates):
            yield Finding(
                f"workload '{w.id}' is MLPS level {w.mlps_level} but no dedicated level-4 pool is available to it",
                w.where("backend" if w.backend else "mlps_level"),
                hint="pin it ('backend:') to a backend with 'dedicated: true' and 'level: 4'",
                address=f"workload:{w.id}",
            )
        if not needs_pool and w.backend is not None and candidates and candidates[0].dedicated:
            yield Finding(
                f"workload '{w.id}' (MLPS level {w.mlps_level}) is pinned to '{w.backend}', a pool dedicated to "
                "level-4 systems",
                w.where("backend"),
                hint="pin it to a shared backend of its zone, or leave 'backend:' out to be placed",
                address=f"workload:{w.id}",
            )
