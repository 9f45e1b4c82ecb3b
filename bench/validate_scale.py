"""Benchmark: `dcctl validate` on a generated province (14 cities, 100 counties, 10,000 servers).

Prints wall time and peak memory of the whole CLI process (median of several runs), next to two peers measured in
the same run on the same files: PyYAML's C loader alone (the floor: parsing without any checking) and a generic
JSON-Schema validator (jsonschema) checking the same files against `dcctl schema` (what an editor-style check costs,
with no references, no policy and no line numbers). Goal: under 2 s and under 300 MB.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench.gen_inventory import generate  # noqa: E402

RUNS = 5

PEER_YAML = """
import sys, yaml, pathlib
for p in sorted(pathlib.Path(sys.argv[1]).glob('*.yaml')):
    yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader)
"""
PEER_JSONSCHEMA = """
import json, sys, yaml, pathlib, subprocess, jsonschema
schema = json.loads(subprocess.run([sys.executable, '-m', 'dcctl', 'schema'], capture_output=True, text=True).stdout)
v = jsonschema.Draft202012Validator(schema)
for p in sorted(pathlib.Path(sys.argv[1]).glob('*.yaml')):
    data = json.loads(json.dumps(yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader), default=str))
    list(v.iter_errors(data))
"""


def measure(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds and peak RSS (MiB) of one child process, and its exit code."""
    wrapper = (
        "import resource, subprocess, sys, time; t=time.perf_counter(); "
        "rc=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "w=time.perf_counter()-t; "
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024, rc)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, check=True)
    wall, rss, rc = out.stdout.split()
    return float(wall), float(rss), int(rc)


def series(argv: list[str]) -> tuple[float, float, float, float, int]:
    runs = [measure(argv) for _ in range(RUNS)]
    walls = [r[0] for r in runs]
    return statistics.median(walls), min(walls), max(walls), max(r[1] for r in runs), runs[-1][2]


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for per_group in (5, 1):
            inv = generate(Path(tmp) / f"inv{per_group}", per_group=per_group)
            size = sum(p.stat().st_size for p in inv.glob("*.yaml"))
            label = f"10,000 servers in {10_000 // per_group:,} entries, {size / 1e6:.1f} MB YAML"
            print(f"\n{label}")
            rows = {
                "dcctl validate": [sys.executable, "-m", "dcctl", "validate", str(inv)],
                "peer: PyYAML CSafeLoader only": [sys.executable, "-c", PEER_YAML, str(inv)],
                "peer: jsonschema on dcctl schema": [sys.executable, "-c", PEER_JSONSCHEMA, str(inv)],
            }
            for name, argv in rows.items():
                med, lo, hi, rss, rc = series(argv)
                results[f"{per_group}/{name}"] = {"median_s": med, "min_s": lo, "max_s": hi, "peak_mib": rss}
                print(f"  {name:<34} {med:6.2f} s (min {lo:.2f}, max {hi:.2f})  peak {rss:6.0f} MiB  exit {rc}")
            d = results[f"{per_group}/dcctl validate"]
            y = results[f"{per_group}/peer: PyYAML CSafeLoader only"]
            j = results[f"{per_group}/peer: jsonschema on dcctl schema"]
            verdict = "met" if d["median_s"] < 2.0 and d["peak_mib"] < 300 else "NOT met"
            print(
                f"  goal < 2 s and < 300 MB: {verdict}; dcctl = {d['median_s'] / y['median_s']:.1f}x the parse-only "
                f"floor, {d['median_s'] / j['median_s']:.2f}x the jsonschema check"
            )
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "validate_scale.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
