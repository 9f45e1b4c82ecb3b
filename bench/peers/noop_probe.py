"""Where a dcctl no-op re-run spends its time (test driver, N domains already made): the CLI's fixed cost
(interpreter + imports, `dcctl --help`; `dcctl validate`) against the in-process engine (Session.plan() on a warm
process: observe + place + diff). Appends JSON lines to bench/peers/out/results.jsonl (step 'probe-*')."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import libvirt_peers as lp

sys.path.insert(0, str(lp.ROOT))


def wall(cmd: list[str], reps: int = 5) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True)  # noqa: PLW1510
        out.append(round(time.perf_counter() - t, 3))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with lp.Holder():
        inv = lp.dcctl_inventory(n, "test")
        state = lp.WORK / "dcctl-probe.db"
        state.unlink(missing_ok=True)
        subprocess.run(
            [str(lp.DCCTL), "apply", str(inv), "--yes", "--state", str(state)], capture_output=True, check=True
        )
        rows = {
            "probe-help": wall([str(lp.DCCTL), "--help"]),
            "probe-validate": wall([str(lp.DCCTL), "validate", str(inv)]),
            "probe-cli-plan": wall([str(lp.DCCTL), "plan", str(inv), "--state", str(state)]),
            "probe-cli-apply-noop": wall([str(lp.DCCTL), "apply", str(inv), "--yes", "--state", str(state)]),
        }
        from dcctl.engine.session import Session

        t = time.perf_counter()
        with Session(inv, state_path=state) as s:
            first = time.perf_counter() - t
            inproc = []
            for _ in range(5):
                t = time.perf_counter()
                p = s.plan()
                inproc.append(round(time.perf_counter() - t, 3))
                assert not p.has_changes
            obs = []
            for _ in range(5):
                t = time.perf_counter()
                s.observe()
                obs.append(round(time.perf_counter() - t, 3))
        rows["probe-session-open"] = [round(first, 3)]
        rows["probe-inprocess-plan"] = inproc
        rows["probe-inprocess-observe"] = obs
        subprocess.run([str(lp.DCCTL), "destroy", str(inv), "--yes", "--state", str(state)], capture_output=True)  # noqa: PLW1510
    for step, v in rows.items():
        lp.record(
            {"tool": "dcctl", "backend": "test", "n": n, "step": step, "walls": v, "median": statistics.median(v)}
        )


if __name__ == "__main__":
    main()
