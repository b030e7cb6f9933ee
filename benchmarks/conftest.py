"""gradharness benchmarks (pytest-benchmark); not part of the unit tests.

Run from the repository root:

    python -m pytest benchmarks/ --benchmark-only            # everything, 1-2 minutes on 2 cores
    python -m pytest benchmarks/ --benchmark-only -k torch   # one suite
    python -m pytest                                         # the unit tests only (testpaths = ["tests"])

What is measured (every figure is also in the terminal summary at the end of the run,
and in each benchmark's ``extra_info`` for ``--benchmark-json``):

* ``test_per_example.py``: one example replayed with ``example=`` (no Hypothesis
  search) on ``reference_layers.Linear`` (256 -> 256, n=64), ``Conv2d`` (n=8, c=f=16,
  16x16, k=3, stride 1, pad 1) and ``LSTM`` (n=16, t=8, d=hdim=32), float64, with all
  checks and with the gradient checks alone, divided by one plain forward + backward of
  the same layer measured in the same test (targets: <= 15 and <= 6); the forward and
  backward calls from ``report.calls``, the share of the time those calls account for,
  and the floor (2 forwards per probe per tensor + the base forward and backward).
  Also the default search ``check_layer(Linear, seed=0)``: seconds per example.
* ``test_vs_torch.py``: the numpy Linear wrapped as a ``torch.autograd.Function``
  (float64): ``torch.autograd.gradcheck`` slow mode, ``fast_mode=True`` and
  gradharness per example (gradient checks), side by side; skipped without torch.
* ``test_zoo.py``: ``gradharness check reference_layers`` at the default profile in a
  child process: wall time and peak RSS (target: under 60 s on 2 cores).
* ``test_memory.py``: peak traced memory (tracemalloc) of one example of a Linear with
  10^6 parameters: O(params), never a dense Jacobian; and the cost of localizing a
  failing gradient element by element on a large tensor.

Environment:

* ``GRADHARNESS_BENCH_THREADS`` (default 1): BLAS/OpenMP threads (and torch's), set
  before numpy is imported. On a small shared machine multithreaded BLAS on these
  sizes mostly measures contention (a 5x spread between runs); 0 leaves them alone.
* ``GRADHARNESS_BENCH_CLOCK`` (default ``cpu``): every timing, pytest-benchmark's
  (unless ``--benchmark-timer`` names another timer) and the baselines', is CPU time
  of this process and of the children it waited for, which other jobs on a shared
  machine do not inflate (with one BLAS thread it is the work done); ``wall`` uses
  ``time.perf_counter``. The zoo reports its child's wall time and CPU time.
* ``GRADHARNESS_BENCH_STRICT=1``: a missed target fails its benchmark (default: the
  summary marks it MISSED and the run passes, these are measurements).

Ratios are paired: before every round of the verdict its baseline is timed again
(untimed setup of that round, best of a few calls), and the ratio is the median over
rounds of (round's verdict) / (its baseline), so both sides see the same load; the
ratio of the two minima is shown next to it in brackets. On a shared VM neither wall
nor CPU time is free of other jobs (steal time and a busy hyperthread sibling inflate
both): read the load average printed with the summary.
"""
from __future__ import annotations

import os
import sys

THREADS = os.environ.get("GRADHARNESS_BENCH_THREADS", "1")
if THREADS != "0":
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ.setdefault(_var, THREADS)


def _pin_loaded_blas(n: int) -> str:
    """Limit the threads of a BLAS numpy already loaded (a plugin imported numpy before this
    conftest, so the environment came too late): threadpoolctl if installed, else OpenBLAS's
    own setter found among the loaded libraries. Returns how, or "" when it could not."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
        return "threadpoolctl"
    except ImportError:
        pass
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            libs = sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower() and ln.split()[-1].startswith("/")})
    except OSError:
        return ""
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                    "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(handle, sym, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                return f"{os.path.basename(lib)}:{sym}"
    return ""


if THREADS == "0":
    BLAS_PINNING = "left alone"
elif "numpy" not in sys.modules:
    BLAS_PINNING = f"{THREADS} (environment, before numpy)"
else:
    _how = _pin_loaded_blas(int(THREADS))
    BLAS_PINNING = f"{THREADS} ({_how}, numpy was already imported)" if _how else \
        "NOT pinned (numpy imported before this conftest and no setter found)"

import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Callable  # noqa: E402

import pytest  # noqa: E402

STRICT = os.environ.get("GRADHARNESS_BENCH_STRICT", "") not in ("", "0")
CLOCK = "wall" if os.environ.get("GRADHARNESS_BENCH_CLOCK", "cpu") == "wall" else "cpu"


def cpu_time() -> float:
    """CPU seconds of this process plus of its children already waited for (the zoo's child)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


#: the clock of every measurement made here
clock = time.perf_counter if CLOCK == "wall" else cpu_time


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """pytest-benchmark times with our clock too, unless --benchmark-timer names another."""
    bs = getattr(session.config, "_benchmarksession", None)
    if CLOCK != "cpu" or bs is None or session.config.getoption("benchmark_timer") != "time.perf_counter":
        return
    from pytest_benchmark.utils import NameWrapper

    bs.options["timer"] = NameWrapper(cpu_time)


# ----- results shared with the terminal summary ---------------------------------------
_RESULTS: list[dict[str, Any]] = []


def machine() -> dict[str, Any]:
    """nproc, CPU model and versions, for the summary and for extra_info."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    info: dict[str, Any] = {"nproc": usable, "cpu_count": os.cpu_count(), "cpu": model,
                            "clock": "CPU time of the process and its waited-for children" if CLOCK == "cpu" else
                            "wall time (time.perf_counter)",
                            "python": platform.python_version(),
                            "blas_threads": BLAS_PINNING}
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    try:
        info["load_avg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    return info


@dataclass
class Timing:
    """Seconds per call: the minimum and the median over the samples."""

    min: float
    median: float
    samples: int

    def __add__(self, other: "Timing") -> "Timing":
        return Timing(min(self.min, other.min), statistics.median([self.median, other.median]),
                      self.samples + other.samples)


def measure(fn: Callable[[], Any], *, repeat: int = 7, min_sample: float = 0.02) -> Timing:
    """Per-call time of a cheap function: each sample loops until it lasts min_sample seconds."""
    fn()
    number = 1
    while True:
        t0 = clock()
        for _ in range(number):
            fn()
        dt = clock() - t0
        if dt >= min_sample or number >= 1 << 20:
            break
        number *= 2
    samples = [dt / number]
    for _ in range(repeat - 1):
        t0 = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - t0) / number)
    return Timing(min(samples), statistics.median(samples), len(samples))


def run_benchmark(benchmark: Any, fn: Callable[[], Any], *, rounds: int, warmup: int = 1,
                  setup: Callable[[], None] | None = None) -> tuple[Any, Timing, list[float]]:
    """benchmark.pedantic(fn) with its timing and per-round seconds (in order); times the call itself
    when benchmarks are disabled. `setup` runs before every round, untimed."""
    def before() -> None:
        if setup is not None:
            setup()

    t0 = clock()
    result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup, setup=before)
    elapsed = clock() - t0
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:
        data = [float(x) for x in getattr(stats, "data", [])]
        return result, Timing(float(stats.min), float(stats.median), int(stats.rounds)), data
    return result, Timing(elapsed, elapsed, 1), [elapsed]


def check_target(value: float, target: float | None, what: str) -> bool | None:
    if target is None:
        return None
    met = value <= target
    if STRICT and not met:
        pytest.fail(f"{what}: {value:.3g} > target {target:g} (GRADHARNESS_BENCH_STRICT=1)")
    return met


@pytest.fixture
def record(request: pytest.FixtureRequest, benchmark: Any) -> Callable[..., None]:
    """record(section, **fields): keep a result for the summary and put it in extra_info."""

    def add(section: str, **fields: Any) -> None:
        row = {"section": section, "test": request.node.name, **fields}
        _RESULTS.append(row)
        for k, v in fields.items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                benchmark.extra_info[k] = v
        benchmark.extra_info["machine"] = f"{machine()['nproc']} cores, {machine()['cpu']}"

    return add


# ----- the terminal summary -------------------------------------------------------------
def _ms(s: float) -> str:
    return f"{s * 1e3:.3g}" if s < 10 else f"{s:.3g}s"


def _mark(met: bool | None) -> str:
    return "" if met is None else ("ok" if met else "MISSED")


def _per_example(tw: Any, rows: list[dict[str, Any]]) -> None:
    tw.write_line("Per-example cost: one replayed example (float64) / one plain forward + backward of the same "
                  "layer, same test")
    tw.write_line(f"  {'layer':<11} {'checks':<11} {'example ms':>10} {'f+b ms':>7} {'ratio [min/min]':>15} "
                  f"{'target':>7} {'':<6} {'calls':>8} {'in layer':>8} {'floor':>6}")
    for r in rows:
        tw.write_line(f"  {r['case']:<11} {r['mode']:<11} {_ms(r['example_s']):>10} {_ms(r['fb_s']):>7} "
                      f"{r['ratio']:>7.1f} [{r['ratio_min']:>5.1f}] "
                      f"{('<= ' + format(r['target'], 'g')) if r['target'] else '-':>7} {_mark(r['met']):<6} "
                      f"{r['forward_calls']:>4}f/{r['backward_calls']}b {100 * r['layer_share']:>7.0f}% "
                      f"{r['floor_ratio']:>6.1f}")
    tw.write_line("  (ratio: median over rounds of example / forward+backward timed before it; in layer: share of "
                  "the example's time the counted calls would take called directly; floor: the ratio at 2 forwards "
                  "per probe (the harness's probes per tensor) + the base forward and backward, nothing else)")


def _search(tw: Any, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        tw.write_line(f"Default search: {r['what']}: {r['examples']} examples, {r['forward_calls']}f/"
                      f"{r['backward_calls']}b in {r['seconds']:.3g}s = {1e3 * r['per_example_s']:.3g} ms per "
                      f"example ({r['calls_per_example']:.0f} layer calls per example)")


def _torch(tw: Any, rows: list[dict[str, Any]]) -> None:
    by_size: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_size.setdefault(r["size"], {})[r["method"]] = r
    tw.write_line("torch.autograd.gradcheck vs gradharness, numpy Linear as a torch.autograd.Function (float64), "
                  "ms per verdict [layer calls]")
    names = ("fb", "slow", "fast", "gradharness", "gradharness-numpy")
    tw.write_line(f"  {'size':<18} " + " ".join(f"{n:>19}" for n in names)
                  + f" {'slow/gh':>8} {'gh/fast':>8} {'fast/fb':>8} {'gh/fb':>6}")
    for size, m in by_size.items():
        cells = []
        for n in names:
            r = m.get(n)
            if r is None:
                cells.append(f"{'-':>19}")
                continue
            est = "~" if r.get("estimated") else ""
            calls = f"[{r['forward_calls']}f/{r['backward_calls']}b]" if r.get("forward_calls") is not None else ""
            cells.append(f"{est + _ms(r['seconds']) + ' ' + calls:>19}")

        def ratio(a: str, b: str, m: dict[str, dict[str, Any]] = m) -> str:
            # each side as a multiple of the forward + backward timed before each of its rounds
            if a in m and b in m and m[b].get("per_fb"):
                est = "~" if m[a].get("estimated") or m[b].get("estimated") else ""
                return f"{est}{m[a]['per_fb'] / m[b]['per_fb']:.3g}"
            return "-"

        tw.write_line(f"  {size:<18} " + " ".join(cells) + f" {ratio('slow', 'gradharness'):>8} "
                      f"{ratio('gradharness', 'fast'):>8} {ratio('fast', 'fb'):>8} {ratio('gradharness', 'fb'):>6}")
    tw.write_line("  (fb: one forward + backward through the autograd.Function; gradharness: grad-input + "
                  "grad-params on the same Function via torch_factory; gradharness-numpy: on the numpy Linear "
                  "directly; ~: estimated from counted calls, too slow to run; ratios are of the medians of "
                  "(round / fb timed before it); target gh/fast <= 1)")
    for r in rows:
        if r["method"].startswith("bug-"):
            tw.write_line(f"  bug {r['size']}: {r['method'][4:]}: {_ms(r['seconds'])} ms, detected={r['detected']}"
                          f"{', ' + r['note'] if r.get('note') else ''}")


def _zoo(tw: Any, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        tw.write_line(f"Reference zoo: gradharness check reference_layers (default profile): exit {r['exit']}, "
                      f"{r['layers']} layers, wall {r['wall_s']:.1f}s, CPU {r['cpu_s']:.1f}s "
                      f"(target < 60 s on 2 cores: {_mark(r['met'])}), "
                      f"peak RSS {r['maxrss_mb']:.0f} MB (python + imports alone: {r['baseline_rss_mb']:.0f} MB), "
                      f"{r['forward_calls']}f/{r['backward_calls']}b calls")
        tw.write_line(f"  slowest layers: {r['slowest']}")


def _memory(tw: Any, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if r.get("kind") == "localize":
            tw.write_line(f"Localization of a failing W ({r['params']:,} params, {r['what']}): "
                          f"{r['seconds']:.2f}s, "
                          f"{r['forward_calls']} forwards, peak {r['peak_mb']:.1f} MB = "
                          f"{r['peak_per_param_bytes']:.1f}x the params; at 10^6 params "
                          f"~{r['estimate_1m_s']:.0f}s (estimated)")
        else:
            tw.write_line(f"Peak memory, {r['what']} ({r['params']:,} params = {r['param_mb']:.1f} MB): "
                          f"peak traced {r['peak_mb']:.1f} MB = {r['peak_per_param_bytes']:.1f}x the params "
                          f"(a dense Jacobian would be {r['jacobian_gb']:.1f} GB); {r['seconds']:.2f}s under "
                          f"tracemalloc, {r['forward_calls']}f/{r['backward_calls']}b: {_mark(r['met'])}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _RESULTS:
        return
    tw = terminalreporter
    tw.section("gradharness benchmark summary")
    m = machine()
    extra = f", torch {m['torch']}" if "torch" in m else ""
    tw.write_line(f"machine: nproc {m['nproc']} (cpu_count {m['cpu_count']}), {m['cpu']}; python {m['python']}, "
                  f"numpy {m.get('numpy', '?')}{extra}; BLAS threads {m['blas_threads']}; "
                  f"load average {m.get('load_avg', '?')}")
    tw.write_line(f"clock: {m['clock']} (GRADHARNESS_BENCH_CLOCK)")
    sections = {"per-example": _per_example, "search": _search, "torch": _torch, "zoo": _zoo, "memory": _memory}
    for name, fn in sections.items():
        rows = [r for r in _RESULTS if r["section"] == name]
        if rows:
            tw.write_line("")
            fn(tw, rows)
