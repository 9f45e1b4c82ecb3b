"""kcli vs dcctl on the same libvirt backends: create, re-run with nothing to do, delete.

Usage: python bench/peers/libvirt_peers.py test N [--reps R]   # libvirt's test driver via test+unix:///default
       python bench/peers/libvirt_peers.py tcg N [--reps R]    # qemu:///system (TCG)
Appends one JSON line per measured step to bench/peers/out/results.jsonl.

Both tools make the same guest: 1 vCPU, 128 MiB, one empty 1 GiB qcow2 disk, one isolated network, no image.
kcli runs from its own venv (KCLI_VENV, default /var/lib/dcctl-bench/kcli-venv) with HOME pointing at a private
~/.kcli; dcctl runs its CLI (.venv/bin/dcctl). Each timing is the wall time of the whole CLI process. RPCs are
counted from libvirt's client debug log (LIBVIRT_LOG_FILTERS="1:rpc", RPC_CLIENT_MSG_TX_QUEUE lines) in a separate
instrumented repetition, with the Python-level libvirt calls per method counted by sitecustomize.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = Path(os.environ.get("BENCH_WORK", "/var/lib/dcctl-bench/work"))
KCLI_VENV = Path(os.environ.get("KCLI_VENV", "/var/lib/dcctl-bench/kcli-venv"))
KCLI = KCLI_VENV / "bin" / "kcli"
DCCTL = ROOT / ".venv" / "bin" / "dcctl"
OUT = HERE / "out" / "results.jsonl"
TEST_URI = "test+unix:///default"
TCG_URI = "qemu:///system"
POOL_ROOM = 100  # the test driver gives every pool 100 GiB; kcli allocates each 1 GiB disk in full


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(cmd, capture_output=True, text=True, **kw)  # noqa: PLW1510


def virsh(uri: str, *args: str, check: bool = False) -> str:
    p = sh(["virsh", "-c", uri, *args])
    if check and p.returncode:
        raise RuntimeError(f"virsh {args}: {p.stderr}")
    return p.stdout


def record(row: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def rpc_count(log: Path) -> tuple[int, dict[str, int]]:
    n = 0
    procs: collections.Counter[str] = collections.Counter()
    if not log.exists():
        return 0, {}
    for line in log.open(errors="replace"):
        if "RPC_CLIENT_MSG_TX_QUEUE" in line:
            n += 1
            m = re.search(r"prog=(\d+) .*proc=(\d+)", line)
            if m:
                procs[f"{m.group(1)}/{m.group(2)}"] += 1
    return n, dict(procs.most_common())


def timed(
    cmd: list[str], env: dict[str, str], instrument: Path | None = None
) -> tuple[float, subprocess.CompletedProcess, dict]:
    env = dict(env)
    extra: dict = {}
    if instrument is not None:
        log, cnt = instrument.with_suffix(".rpc.log"), instrument.with_suffix(".calls.json")
        log.unlink(missing_ok=True)
        env.update(
            LIBVIRT_LOG_FILTERS="1:rpc",
            LIBVIRT_LOG_OUTPUTS=f"1:file:{log}",
            PYTHONPATH=str(HERE),
            LVCOUNT_OUT=str(cnt),
        )
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)  # noqa: PLW1510
    wall = time.perf_counter() - t
    if instrument is not None:
        n, procs = rpc_count(log)
        calls = json.loads(cnt.read_text()) if cnt.exists() else {}
        extra = {"rpcs": n, "rpc_procs": procs, "py_calls": calls.get("total"), "py_by_method": calls.get("calls")}
        log.unlink(missing_ok=True)
    return wall, p, extra


# ------------------------------------------------------------------------------------------------------ kcli
def kcli_env() -> dict[str, str]:
    home = WORK / "kcli-home"
    return {**os.environ, "HOME": str(home)}


def kcli_config(mode: str, pools: int) -> None:
    home = WORK / "kcli-home" / ".kcli"
    home.mkdir(parents=True, exist_ok=True)
    common = {"virttype": "qemu", "cpumodel": "qemu64", "nested": False}
    cfg = {
        "default": {"client": "testdrv" if mode == "test" else "local"},
        "local": {"type": "kvm", "host": "127.0.0.1", "pool": "kclibench", "nets": ["kclibench-net"], **common},
        "testdrv": {
            "type": "kvm",
            "host": "127.0.0.1",
            "url": TEST_URI,
            "pool": "kclibench0",
            "nets": ["kclibench-net"],
            **common,
        },
    }
    (home / "config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def kcli_plan(n: int, mode: str, pools: int) -> Path:
    f = WORK / f"kcli-{mode}-{n}-{pools}.yml"
    with f.open("w") as out:
        for i in range(n):
            pool = f"kclibench{i * pools // n}" if mode == "test" else "kclibench"
            out.write(
                f"kb{i:04d}:\n  numcpus: 1\n  memory: 128\n  disks:\n  - size: 1\n"
                f"  nets:\n  - kclibench-net\n  pool: {pool}\n"
            )
    return f


# ----------------------------------------------------------------------------------------------------- dcctl
def dcctl_inventory(n: int, mode: str, storage_gb: int | None = None) -> Path:
    inv = WORK / f"dcctl-inv-{mode}-{n}"
    shutil.rmtree(inv, ignore_errors=True)
    inv.mkdir(parents=True)
    uri = TEST_URI if mode == "test" else TCG_URI
    storage = "/dcctl-peerbench" if mode == "test" else str(WORK / "dcctl-pool")
    backend = {
        "id": "bench-kvm",
        "type": "libvirt",
        "uri": uri,
        "zones": ["extranet"],
        "level": 3,
        "virt_type": "qemu",
        "storage_path": storage,
        "capacity": {"vcpus": max(n, 8), "ram_gb": max(n, 8), "storage_gb": storage_gb or 2 * n + 10},
        "overcommit": {"cpu": 4.0},
    }
    doc = {
        "province": {
            "id": "peerbench",
            "name": "基准",
            "dr_site": "pb-dr",
            "cities": [{"id": "pbcity", "name": "城市"}],
        },
        "catalog": {
            "flavors": [{"id": "b1", "vcpus": 1, "ram_mb": 128, "disk_gb": 1}],
            "images": [{"id": "blank", "source": "/nonexistent/blank.qcow2"}],
        },
        "data_centers": [
            {"id": "pb-dc", "name": "数据中心", "tier": "municipal", "city": "pbcity", "backends": [backend]},
            {
                "id": "pb-dr",
                "name": "灾备",
                "tier": "provincial",
                "role": "dr",
                "backends": [
                    {
                        "id": "pb-dr-kvm",
                        "type": "libvirt",
                        "uri": "test:///default",
                        "zones": ["extranet"],
                        "level": 4,
                        "capacity": {"vcpus": 8, "ram_gb": 8, "storage_gb": 100},
                    }
                ],
            },
        ],
        "tenancies": [
            {
                "id": "pbt",
                "name": "县",
                "kind": "county",
                "city": "pbcity",
                "hosted_in": "pb-dc",
                "zone": "extranet",
                "quotas": {"vcpus": n, "ram_gb": n, "storage_gb": 2 * n, "instances": n},
                "networks": [{"id": "app", "cidr": "198.18.63.0/24" if mode == "tcg" else "198.18.64.0/24"}],
                "workloads": [
                    {
                        "id": "pbw",
                        "name": "系统",
                        "mlps_level": 2,
                        "servers": [{"name": "s", "count": n, "flavor": "b1", "image": "blank", "networks": ["app"]}],
                    }
                ],
            }
        ],
    }
    (inv / "inventory.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return inv


# --------------------------------------------------------------------------------------------- test backend
class Holder:
    """One process holding a test+unix:///default connection: the test driver's state lives while it does."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Holder:
        code = "import libvirt,time,sys; c=libvirt.open(sys.argv[1]); print('held',flush=True); time.sleep(1e6)"
        self.proc = subprocess.Popen(
            [str(KCLI_VENV / "bin" / "python"), "-c", code, TEST_URI], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def prepare_test_backend(pools: int) -> None:
    net = (
        "<network><name>kclibench-net</name><bridge name='kclibench0'/>"
        "<ip address='198.18.61.1' netmask='255.255.255.0'/></network>"
    )
    p = WORK / "kclibench-net.xml"
    p.write_text(net)
    virsh(TEST_URI, "net-define", str(p), check=True)
    virsh(TEST_URI, "net-start", "kclibench-net", check=True)
    for i in range(pools):
        virsh(TEST_URI, "pool-define-as", f"kclibench{i}", "dir", "--target", f"/kclibench{i}", check=True)
        virsh(TEST_URI, "pool-start", f"kclibench{i}", check=True)


def prepare_tcg_backend() -> None:
    pool_dir = WORK / "kcli-pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    if "kclibench-net" not in virsh(TCG_URI, "net-list", "--all", "--name"):
        net = (
            "<network><name>kclibench-net</name><bridge name='kclibench0'/>"
            "<ip address='198.18.62.1' netmask='255.255.255.0'/></network>"
        )
        p = WORK / "kclibench-net.xml"
        p.write_text(net)
        virsh(TCG_URI, "net-define", str(p), check=True)
        virsh(TCG_URI, "net-start", "kclibench-net", check=True)
    if "kclibench" not in virsh(TCG_URI, "pool-list", "--all", "--name").split():
        virsh(TCG_URI, "pool-define-as", "kclibench", "dir", "--target", str(pool_dir), check=True)
        virsh(TCG_URI, "pool-start", "kclibench", check=True)


def cleanup_tcg_backend() -> None:
    virsh(TCG_URI, "net-destroy", "kclibench-net")
    virsh(TCG_URI, "net-undefine", "kclibench-net")
    virsh(TCG_URI, "pool-destroy", "kclibench")
    virsh(TCG_URI, "pool-undefine", "kclibench")


def domains(uri: str, prefix: str) -> dict[str, str]:
    out = {}
    for line in virsh(uri, "list", "--all").splitlines()[2:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].startswith(prefix):
            out[parts[1]] = parts[2].strip()
    return out


# ---------------------------------------------------------------------------------------------------- runs
def one_rep(tool: str, mode: str, n: int, rep: int, instrument: bool, pools: int) -> None:
    uri = TEST_URI if mode == "test" else TCG_URI
    tag = f"{tool}-{mode}-{n}-p{pools}-r{rep}{'-i' if instrument else ''}"
    base = {"tool": tool, "backend": mode, "n": n, "rep": rep, "instrumented": instrument, "pools": pools}
    if tool == "kcli":
        plan = kcli_plan(n, mode, pools)
        env = kcli_env()
        steps = [
            ("create", [str(KCLI), "create", "plan", "-f", str(plan), f"pb{n}"]),
            ("rerun", [str(KCLI), "create", "plan", "-f", str(plan), f"pb{n}"]),
            ("delete", [str(KCLI), "delete", "plan", f"pb{n}", "-y"]),
        ]
        prefix = "kb"
    else:
        inv = dcctl_inventory(n, mode)
        state = WORK / f"dcctl-state-{mode}-{n}.db"
        state.unlink(missing_ok=True)
        env = dict(os.environ)
        steps = [
            ("create", [str(DCCTL), "apply", str(inv), "--yes", "--state", str(state)]),
            ("rerun", [str(DCCTL), "apply", str(inv), "--yes", "--state", str(state)]),
            ("delete", [str(DCCTL), "destroy", str(inv), "--yes", "--state", str(state)]),
        ]
        prefix = "dcctl-"
    for step, cmd in steps:
        wall, p, extra = timed(cmd, env, WORK / f"{tag}-{step}" if instrument else None)
        doms = domains(uri, prefix)
        states = dict(collections.Counter(doms.values()))
        row = {
            **base,
            "step": step,
            "wall": round(wall, 3),
            "rc": p.returncode,
            "domains_after": len(doms),
            "states_after": states,
            **extra,
        }
        if p.returncode:
            row["error_tail"] = (p.stdout + p.stderr)[-1500:]
        if tool == "kcli" and step == "rerun":
            row["skipped"] = p.stdout.count("skipped")
        if tool == "dcctl" and step == "rerun":
            row["output_tail"] = p.stdout[-300:]
        (WORK / f"{tag}-{step}.out").write_text(p.stdout + "\n--- stderr\n" + p.stderr)
        record(row)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["test", "tcg"])
    ap.add_argument("n", type=int)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tools", default="dcctl,kcli")
    ap.add_argument("--pools", type=int, default=0, help="kcli pools on the test driver (0: one per 100 VMs)")
    ap.add_argument("--no-instrument", action="store_true")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)

    tools = a.tools.split(",")
    pools = a.pools or max(1, -(-a.n // POOL_ROOM))
    if a.mode == "test":
        for tool in tools:
            for rep in range(a.reps + (0 if a.no_instrument else 1)):
                with Holder():  # a fresh test-driver host per repetition
                    prepare_test_backend(pools)
                    kcli_config("test", pools)
                    one_rep(tool, "test", a.n, rep, instrument=(rep == a.reps), pools=pools)
    else:
        prepare_tcg_backend()
        kcli_config("tcg", 1)
        try:
            for rep in range(a.reps):
                for tool in tools:
                    one_rep(tool, "tcg", a.n, rep, instrument=False, pools=1)
        finally:
            cleanup_tcg_backend()


if __name__ == "__main__":
    main()
