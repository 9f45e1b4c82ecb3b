"""Summarise bench/peers/out/results.jsonl: median (min–max) per tool, backend, N and step; RPCs per domain; goals."""

from __future__ import annotations

import collections
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "out" / "results.jsonl"

# libvirt remote protocol procedure numbers (remote_protocol.x) for the calls both tools make
PROC = {
    1: "connectOpen",
    2: "connectClose",
    7: "getCapabilities",
    9: "domainCreate",
    11: "domainDefineXML",
    12: "domainDestroy",
    14: "domainGetXMLDesc",
    23: "domainLookupByName",
    24: "domainSetAutostart",
    29: "domainCreate?",
    35: "domainUndefine",
    43: "networkGetXMLDesc",
    46: "networkLookupByName",
    60: "connectGetURI/auth",
    66: "authList",
    83: "storagePoolLookupByName",
    84: "storagePoolCreateXML?",
    86: "storageVolLookupByPath?",
    88: "storagePoolRefresh",
    91: "storagePoolGetXMLDesc",
    92: "poolListVolumes",
    93: "storagePoolLookupByName",
    94: "storageVolDelete",
    95: "storageVolCreateXML",
    97: "storageVolLookupByPath",
    98: "storageVolGetInfo",
    100: "storageVolGetPath",
    150: "domainIsActive",
    162: "baselineCPU",
    273: "connectListAllDomains",
    281: "connectListAllStoragePools",
    282: "connectListAllNetworks",
    283: "connectListAllStorageVolumes/pool",
    231: "domainUndefineFlags",
    353: "domainInterfaceAddresses",
}


def load() -> list[dict]:
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def stats(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 run)"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}, {len(values)} runs)"


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    rows = load()
    walls: dict[tuple, list[float]] = collections.defaultdict(list)
    fails: dict[tuple, list[dict]] = collections.defaultdict(list)
    rpcs: dict[tuple, int] = {}
    calls: dict[tuple, dict] = {}
    for r in rows:
        if "wall" not in r or r["step"].startswith("room"):
            continue
        key = (r["backend"], r["n"], r["tool"], r["step"])
        if r.get("instrumented"):
            rpcs[key] = r.get("rpcs", 0)
            calls[key] = r.get("py_by_method") or {}
            continue
        if r.get("rc"):
            fails[key].append(r)
        walls[key].append(r["wall"])
    keys = sorted({k[:2] for k in walls}, key=lambda k: ({"test": 0, "tcg": 1, "openstack": 2}[k[0]], k[1]))
    print(
        "| backend | N | step | dcctl wall s: median (min–max) | peer | peer wall s | ratio peer/dcctl "
        "| dcctl RPC/domain | peer RPC/domain |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for backend, n in keys:
        peer = "ansible" if backend == "openstack" else "kcli"
        for step in ("create", "rerun", "delete"):
            d, p = walls.get((backend, n, "dcctl", step), []), walls.get((backend, n, peer, step), [])
            ratio = f"{med(p) / med(d):.1f}×" if d and p else "—"
            dr = rpcs.get((backend, n, "dcctl", step))
            pr = rpcs.get((backend, n, peer, step))
            bad = [
                f"{t}: rc≠0 in {len(fails[(backend, n, t, step)])}"
                for t in ("dcctl", peer)
                if fails.get((backend, n, t, step))
            ]
            print(
                f"| {backend} | {n} | {step} | {stats(d)} | {peer} | {stats(p)} | {ratio} | {dr / n:.1f} |"
                if dr is not None
                else f"| {backend} | {n} | {step} | {stats(d)} | {peer} | {stats(p)} | {ratio} | — |",
                end="",
            )
            print(f" {pr / n:.1f} |" if pr is not None else " — |", ("; ".join(bad) if bad else ""))
    # ---- goals
    print("\nGoals:")

    def g(backend: str, n: int, tool: str, step: str) -> float | None:
        return med(walls.get((backend, n, tool, step), []))

    c = {n: g("test", n, "dcctl", "create") for n in (100, 300, 1000)}
    if all(c.values()):
        s1 = (c[300] - c[100]) / 200 * 1000  # type: ignore[operator]
        s2 = (c[1000] - c[300]) / 700 * 1000  # type: ignore[operator]
        lin = s2 / s1
        print(
            f"- libvirt: dcctl scales linearly: create wall 100/300/1000 = {c[100]:.2f}/{c[300]:.2f}/{c[1000]:.2f} s; "
            f"marginal cost {s1:.2f} ms/domain (100→300) vs {s2:.2f} ms/domain (300→1000), ratio {lin:.2f} "
            f"(0.75–1.33 counted linear): {'met' if 0.75 <= lin <= 1.33 else 'NOT met'}"
        )
        k = {n: g("test", n, "kcli", "create") for n in (100, 300, 1000)}
        if all(k.values()):
            print(
                f"  (kcli per domain at 100/300/1000: {k[100] / 100 * 1000:.1f}/{k[300] / 300 * 1000:.1f}/"
                f"{k[1000] / 1000 * 1000:.1f} ms: grows with N)"
            )
    v = g("test", 1000, "dcctl", "create")
    if v:
        print(
            f"- libvirt: 1,000 domains created in {v:.2f} s, goal < 5 s (ratio {v / 5:.2f} of budget): "
            f"{'met' if v < 5 else 'NOT met'}"
        )
    r = rpcs.get(("test", 1000, "dcctl", "create"))
    if r:
        print(
            f"- libvirt: {r / 1000:.1f} RPCs per domain in create, goal ≤ 15 (ratio {r / 1000 / 15:.2f}): "
            f"{'met' if r / 1000 <= 15 else 'NOT met'}"
        )
    v = g("test", 1000, "dcctl", "rerun")
    if v:
        print(
            f"- libvirt: re-run of 1,000 in {v:.2f} s, goal < 0.5 s (ratio {v / 0.5:.2f} of budget): "
            f"{'met' if v < 0.5 else 'NOT met'}"
        )
    d, k = g("tcg", 20, "dcctl", "delete"), g("tcg", 20, "kcli", "delete")
    if d and k:
        print(
            f"- TCG: delete {k / d:.1f}× faster than kcli's sequential delete, goal ≥ 2×: "
            f"{'met' if k / d >= 2 else 'NOT met'}"
        )
    d, a = g("openstack", 20, "dcctl", "create"), g("openstack", 20, "ansible", "create")
    if d and a:
        print(
            f"- OpenStack: create {a / d:.1f}× faster than the openstack.cloud loop, goal ≥ 3×: "
            f"{'met' if a / d >= 3 else 'NOT met'}"
        )
    d, a = g("openstack", 20, "dcctl", "rerun"), g("openstack", 20, "ansible", "rerun")
    if d and a:
        nochange = [
            r.get("no_change")
            for r in rows
            if r.get("backend") == "openstack" and r.get("tool") == "dcctl" and r.get("step") == "rerun"
        ]
        print(
            f"- OpenStack: no-op run {a / d:.1f}× faster than the openstack.cloud re-run, goal ≥ 20×: "
            f"{'met' if a / d >= 20 else 'NOT met'}; dcctl reported no change on {sum(map(bool, nochange))} of "
            f"{len(nochange)} re-runs"
        )
    crashes = [r for r in rows if r.get("rc") and not r["step"].startswith("room")]
    print(
        "- No crash: non-zero exits outside the out-of-room tests: "
        + (", ".join(f"{r['tool']} {r['backend']} N={r.get('n')} {r['step']}" for r in crashes) or "none")
    )
    for r in rows:
        if r.get("step", "").startswith("room"):
            print(
                f"  room test: {r['tool']} N={r['n']} {r['step']}: rc={r['rc']} domains after={r['domains_after']} "
                f"{r.get('states_after', '')} {r.get('error', '')}"
            )
    # ---- where dcctl's calls go
    print("\ndcctl libvirt calls per domain by method (instrumented runs, test driver, N=1000):")
    for step in ("create", "rerun", "delete"):
        m = calls.get(("test", 1000, "dcctl", step))
        if m:
            top = ", ".join(f"{k} {v / 1000:.2f}" for k, v in sorted(m.items(), key=lambda x: -x[1])[:12])
            print(f"- {step}: {top}")
    print("\nkcli libvirt calls per domain by method (instrumented runs, test driver, N=1000):")
    for step in ("create", "rerun", "delete"):
        m = calls.get(("test", 1000, "kcli", step))
        if m:
            top = ", ".join(f"{k} {v / 1000:.2f}" for k, v in sorted(m.items(), key=lambda x: -x[1])[:10])
            print(f"- {step}: {top}")


if __name__ == "__main__":
    main()
