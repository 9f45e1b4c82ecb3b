"""What each tool does when the backend runs out of room (libvirt's test driver: 100 GiB per pool).

1. kcli, N=300 one-GiB disks in ONE pool (kcli allocates each disk in full): create, re-run, delete.
2. dcctl, N=300 with the backend's declared storage capacity equal to the room (100 GB): apply.
   dcctl's volumes are thin (allocation 0), so the test driver itself never runs out for it; what dcctl checks is
   the inventory's declared capacity, before it starts.
Appends JSON lines to bench/peers/out/results.jsonl (step names prefixed 'room-').
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import libvirt_peers as lp


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    lp.WORK.mkdir(parents=True, exist_ok=True)
    with lp.Holder():
        lp.prepare_test_backend(1)
        lp.kcli_config("test", 1)
        plan = lp.kcli_plan(n, "test", 1)
        env = lp.kcli_env()
        for step, cmd in (
            ("room-create", [str(lp.KCLI), "create", "plan", "-f", str(plan), f"pr{n}"]),
            ("room-rerun", [str(lp.KCLI), "create", "plan", "-f", str(plan), f"pr{n}"]),
            ("room-delete", [str(lp.KCLI), "delete", "plan", f"pr{n}", "-y"]),
        ):
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)  # noqa: PLW1510
            wall = time.perf_counter() - t
            doms = lp.domains(lp.TEST_URI, "kb")
            err = [ln for ln in (p.stdout + p.stderr).splitlines() if "Error" in ln or "error" in ln][-2:]
            lp.record(
                {
                    "tool": "kcli",
                    "backend": "test",
                    "n": n,
                    "pools": 1,
                    "step": step,
                    "wall": round(wall, 3),
                    "rc": p.returncode,
                    "domains_after": len(doms),
                    "states_after": dict(collections.Counter(doms.values())),
                    "error": err,
                }
            )
    with lp.Holder():
        inv = lp.dcctl_inventory(n, "test", storage_gb=100)
        state = lp.WORK / "dcctl-room.db"
        state.unlink(missing_ok=True)
        t = time.perf_counter()
        p = subprocess.run(  # noqa: PLW1510
            [str(lp.DCCTL), "apply", str(inv), "--yes", "--state", str(state)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
        )
        wall = time.perf_counter() - t
        doms = lp.domains(lp.TEST_URI, "dcctl-")
        pools = lp.virsh(lp.TEST_URI, "pool-list", "--all", "--name").split()
        lp.record(
            {
                "tool": "dcctl",
                "backend": "test",
                "n": n,
                "pools": 1,
                "step": "room-create",
                "wall": round(wall, 3),
                "rc": p.returncode,
                "domains_after": len(doms),
                "dcctl_pool_made": "dcctl" in pools,
                "error": (p.stdout + p.stderr).strip().splitlines()[-3:],
            }
        )


if __name__ == "__main__":
    main()
