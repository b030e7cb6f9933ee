"""Profile gradharness on one example and on one full search, and account for every layer call.

    python scripts/profile_example.py                      # everything, pyinstrument if installed
    python scripts/profile_example.py --profiler cprofile  # the standard library's profiler
    python scripts/profile_example.py --what example --top 40
    python scripts/profile_example.py --what accounting --layer LSTM   # or Conv2d
    GRADHARNESS_BENCH_THREADS=0 python scripts/profile_example.py   # leave BLAS threads as they are

Three parts, each printed:

1. calls per check: forward/backward calls and milliseconds each check spends on one
   example of ``reference_layers.Linear`` at d_in = d_out = 256, n = 64, float64
   (``--layer Conv2d`` / ``LSTM``: the sizes of benchmarks/test_per_example.py),
   replayed with ``example=`` (no Hypothesis), next to the cost of one plain
   forward + backward of the same layer; then the same accounting summed over a full
   ``check_layer(Linear, seed=0)`` at the default (small) dims, with the share of the
   wall time spent outside ``run_example`` (Hypothesis: generation, the explicit
   examples, the search bookkeeping);
2. the profile of that one example (flat self-time list, then the top of the call tree);
3. the profile of the full ``check_layer(Linear, seed=0)``.

The accounting wraps the registered checks and ``Context.forward_raw``/``backward_raw``
in this process only; nothing in the package is changed. BLAS is pinned to one thread
(set GRADHARNESS_BENCH_THREADS=N to choose, 0 to leave it alone) because on a small
shared machine multithreaded BLAS on these sizes mostly measures contention.
"""
from __future__ import annotations

import os
import sys

_THREADS = os.environ.get("GRADHARNESS_BENCH_THREADS", "1")
if _THREADS != "0" and "numpy" not in sys.modules:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _THREADS)

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import numpy as np  # noqa: E402

import gradharness  # noqa: E402
from gradharness import _core, checks  # noqa: E402
from gradharness._context import Context  # noqa: E402
from reference_layers import LSTM, Conv2d, Linear  # noqa: E402

#: CPU time of this process: other jobs on a shared machine do not inflate it (GRADHARNESS_BENCH_CLOCK=wall: wall time)
CLOCK = time.perf_counter if os.environ.get("GRADHARNESS_BENCH_CLOCK", "cpu") == "wall" else time.process_time
EXAMPLE = {"dims": {"n": 64, "d_in": 256, "d_out": 256}, "hyper": {}, "seed": 0, "values": "uniform"}


# ----- call accounting -------------------------------------------------------------
class Accounting:
    """Forward/backward calls and seconds per check, collected by wrapping (this process only)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[float]] = collections.OrderedDict()
        self.current = "base trace + setup"
        self.in_examples = 0.0

    def row(self, name: str) -> list[float]:
        return self.rows.setdefault(name, [0, 0, 0.0])

    def reset(self) -> None:
        self.rows.clear()
        self.in_examples = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator["Accounting"]:
        orig_f, orig_b, orig_run = Context.forward_raw, Context.backward_raw, _core.run_example
        orig_reg = dict(checks.REGISTRY)
        acc = self

        def forward_raw(ctx: Context, *a: Any, **k: Any) -> Any:
            acc.row(acc.current)[0] += 1
            return orig_f(ctx, *a, **k)

        def backward_raw(ctx: Context, *a: Any, **k: Any) -> Any:
            acc.row(acc.current)[1] += 1
            return orig_b(ctx, *a, **k)

        def wrap(name: str, fn: Callable[[Context], Any]) -> Callable[[Context], Any]:
            def run(ctx: Context) -> Any:
                acc.current = name
                t = CLOCK()
                try:
                    return fn(ctx)
                finally:
                    acc.row(name)[2] += CLOCK() - t
                    acc.current = "base trace + setup"
            return run

        def run_example(*a: Any, **k: Any) -> Any:
            t = CLOCK()
            try:
                return orig_run(*a, **k)
            finally:
                acc.in_examples += CLOCK() - t

        Context.forward_raw, Context.backward_raw = forward_raw, backward_raw  # type: ignore[method-assign]
        _core.run_example = run_example  # type: ignore[assignment]
        for name, chk in orig_reg.items():
            checks.REGISTRY[name] = checks.Check(chk.name, chk.doc, wrap(name, chk.fn), chk.applies, chk.every_dtype)
        try:
            yield self
        finally:
            Context.forward_raw, Context.backward_raw = orig_f, orig_b  # type: ignore[method-assign]
            _core.run_example = orig_run  # type: ignore[assignment]
            checks.REGISTRY.clear()
            checks.REGISTRY.update(orig_reg)

    def table(self, total_s: float) -> str:
        lines = [f"  {'check':<24} {'forward':>7} {'backward':>8} {'ms':>9}"]
        timed = 0.0
        for name, (f, b, s) in self.rows.items():
            if f == b == 0 and s < 5e-5:
                continue
            timed += s
            lines.append(f"  {name:<24} {int(f):>7} {int(b):>8} {s * 1e3:>9.2f}")
        nf = sum(int(r[0]) for r in self.rows.values())
        nb = sum(int(r[1]) for r in self.rows.values())
        lines.append(f"  {'total':<24} {nf:>7} {nb:>8} {total_s * 1e3:>9.2f}   (checks {timed * 1e3:.2f} ms, "
                     f"the rest: building, the base trace, report)")
        return "\n".join(lines)


#: --layer choices: (class, example) at the sizes of benchmarks/test_per_example.py
LAYERS = {
    "Linear": (Linear, EXAMPLE),
    "Conv2d": (Conv2d, {"dims": {"n": 8, "c": 16, "f": 16, "h": 16, "w": 16},
                        "hyper": {"k": 3, "stride": 1, "pad": 1}, "seed": 0, "values": "uniform"}),
    "LSTM": (LSTM, {"dims": {"n": 16, "t": 8, "d": 32, "hdim": 32}, "hyper": {}, "seed": 0, "values": "uniform"}),
}


def _plain_costs(cls: Any, ex: dict[str, Any]) -> tuple[float, float]:
    """Seconds of one forward and of one backward of the layer, called directly (min of 5 x 20)."""
    decl = gradharness.declaration_of(cls)
    rng = np.random.default_rng(0)
    layer = decl.make({**ex["dims"], **ex["hyper"]}, rng)
    shape = tuple(ex["dims"][d] for d in decl.options.get("input", "n d_in").split())
    x = rng.uniform(-3, 3, shape)
    dout = rng.standard_normal(layer.forward(x).shape)
    f = min(timeit.repeat(lambda: layer.forward(x), number=20, repeat=5, timer=CLOCK)) / 20
    b = min(timeit.repeat(lambda: layer.backward(dout), number=20, repeat=5, timer=CLOCK)) / 20
    return f, b


def _best_of(fn: Callable[[], Any], runs: int) -> tuple[Any, float]:
    best, result = float("inf"), None
    for _ in range(runs):
        t = CLOCK()
        result = fn()
        best = min(best, CLOCK() - t)
    return result, best


def accounting(layer_name: str = "Linear", runs: int = 5) -> None:
    acc = Accounting()
    cls, ex = LAYERS[layer_name]
    tf, tb = _plain_costs(cls, ex)
    print(f"{layer_name} {ex['dims']} {ex['hyper'] or ''}: one plain forward {tf * 1e3:.3f} ms, backward "
          f"{tb * 1e3:.3f} ms, forward + backward {(tf + tb) * 1e3:.3f} ms (float64)\n")
    for label, chosen in (("all checks", None), ("grad-input + grad-params", ("grad-input", "grad-params"))):
        # timed without the accounting wrappers (best of `runs`), then counted once with them
        rep, total = _best_of(lambda chosen=chosen: gradharness.check_layer(cls, dtypes=(np.float64,), example=ex,
                                                                            checks=chosen), runs)
        with acc.installed():
            acc.reset()
            t = CLOCK()
            gradharness.check_layer(cls, dtypes=(np.float64,), example=ex, checks=chosen)
            counted = CLOCK() - t
        nf, nb = rep.calls["forward"], rep.calls["backward"]
        layer_s = nf * tf + nb * tb
        print(f"[one example, {label}] {total * 1e3:.1f} ms (best of {runs}) = {total / (tf + tb):.1f} x "
              f"(forward + backward); report.calls {nf}f/{nb}b; those calls alone would take "
              f"{layer_s * 1e3:.1f} ms ({100 * layer_s / total:.0f}% of the time)")
        print(acc.table(counted) + "\n")
    if layer_name != "Linear":
        return
    rep, total = _best_of(lambda: gradharness.check_layer(Linear, seed=0), max(runs // 2, 1))
    with acc.installed():
        acc.reset()
        t = CLOCK()
        gradharness.check_layer(Linear, seed=0)
        counted = CLOCK() - t
    inside = acc.in_examples
    print(f"[check_layer(Linear, seed=0), default dims and dtypes] {rep.summary()}")
    print(f"  {total:.3f} s wall (best of {max(runs // 2, 1)}); in the counted run {inside:.3f} s of {counted:.3f} s "
          f"inside run_example ({100 * inside / counted:.0f}%); outside (Hypothesis generation, explicit examples, "
          f"bookkeeping): {1e3 * (counted - inside) / max(rep.examples, 1):.2f} ms per example; inside: "
          f"{1e3 * inside / max(rep.examples, 1):.2f} ms per example")
    print(acc.table(counted) + "\n")


# ----- profiles ----------------------------------------------------------------------
def _profile(fn: Callable[[], Any], which: str, top: int, title: str) -> None:
    print(f"===== profile: {title} ({which}) =====")
    if which == "pyinstrument":
        from pyinstrument import Profiler
        from pyinstrument.renderers import ConsoleRenderer

        prof = Profiler(interval=0.0005)
        prof.start()
        fn()
        prof.stop()
        flat = prof.output(ConsoleRenderer(flat=True, unicode=False, color=False)).splitlines()
        tree = prof.output(ConsoleRenderer(unicode=False, color=False, short_mode=True)).splitlines()
        print("-- self time per function (flat) --")
        print("\n".join(line for line in flat[:top + 7] if line.strip()))
        print("-- call tree (top) --")
        print("\n".join(line for line in tree[:top + 7] if line.strip()))
    else:
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key)
            st.print_stats(top)
            text = buf.getvalue().splitlines()
            start = next((i for i, line in enumerate(text) if "ncalls" in line), 0)
            print(f"-- sorted by {key} --")
            print("\n".join(text[max(start - 3, 0):]).rstrip())
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profiler", choices=("auto", "pyinstrument", "cprofile"), default="auto")
    p.add_argument("--what", choices=("all", "accounting", "example", "full"), default="all")
    p.add_argument("--top", type=int, default=30, help="lines of each listing (default 30)")
    p.add_argument("--repeat", type=int, default=5, help="examples replayed inside the example profile (default 5)")
    p.add_argument("--layer", choices=list(LAYERS), default="Linear",
                   help="layer of the call accounting and of the example profile (default Linear 256x256, n=64)")
    args = p.parse_args(argv)
    which = args.profiler
    if which == "auto":
        try:
            import pyinstrument  # noqa: F401
            which = "pyinstrument"
        except ImportError:
            which = "cprofile"
    import platform

    print(f"python {platform.python_version()}, numpy {np.__version__}, cores {os.cpu_count()}, "
          f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, clock "
          f"{'wall' if CLOCK is time.perf_counter else 'CPU time'} (the profiles below sample wall time)\n")
    if args.what in ("all", "accounting"):
        accounting(args.layer)
    if args.what in ("all", "example"):
        cls, ex = LAYERS[args.layer]
        gradharness.check_layer(cls, dtypes=(np.float64,), example=ex)  # warm caches and imports

        def one_example() -> None:
            for _ in range(args.repeat):
                gradharness.check_layer(cls, dtypes=(np.float64,), example=ex)

        _profile(one_example, which, args.top,
                 f"{args.repeat} x one example, {args.layer} {ex['dims']} float64, all checks")
    if args.what in ("all", "full"):
        gradharness.check_layer(Linear, seed=1)  # warm
        _profile(lambda: gradharness.check_layer(Linear, seed=0), which, args.top,
                 "check_layer(reference_layers.Linear, seed=0), default dims and dtypes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
