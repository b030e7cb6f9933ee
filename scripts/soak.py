"""Soak: every reference layer for many examples in float64 and float32, counting false alarms.

    python scripts/soak.py                      # 1000 examples per layer (thorough profile), seeds 0..2
    python scripts/soak.py --examples 100 --seeds 1 Linear Conv2d

The reference layers are correct, so every failure is a false alarm of the harness;
the run prints each one in full and exits 1 if there was any. Half the examples use
adversarial values (exact zeros at ReLU kinks, ties for max and pooling, the ends of
the domain), and every run includes a batch of 1 and size-1 dims.
"""
from __future__ import annotations

import argparse
import sys
import time

import gradharness
import reference_layers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("layers", nargs="*", help="reference layer names (default: all declared)")
    p.add_argument("--examples", type=int, default=1000, help="examples per layer and seed (default 1000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per layer (default 3)")
    args = p.parse_args(argv)
    decls = [d for d in gradharness.declared_in(reference_layers) if not args.layers or d.name in args.layers]
    # the thorough profile runs 10x max_examples
    per_call = max(1, args.examples // 10)
    total_alarms = total_examples = 0
    started = time.perf_counter()
    print(f"{'layer':<22} {'examples':>9} {'alarms':>7} {'inconclusive probes':>20} {'seconds':>8}")
    for decl in decls:
        t0 = time.perf_counter()
        alarms = examples = inconclusive = 0
        for seed in range(args.seeds):
            report = gradharness.check_layer(decl.target, max_examples=per_call, profile="thorough", seed=seed,
                                             dtypes=("float64", "float32"))
            examples += report.examples
            inconclusive += report.inconclusive_probes
            if not report.passed:
                alarms += len(report.failures)
                for f in report.failures:
                    print(f.message, file=sys.stderr)
        total_alarms += alarms
        total_examples += examples
        print(f"{decl.name:<22} {examples:>9} {alarms:>7} {inconclusive:>20} {time.perf_counter() - t0:>8.1f}",
              flush=True)
    print(f"\n{len(decls)} layers, {total_examples} examples in float64 and float32: {total_alarms} false alarms "
          f"in {time.perf_counter() - started:.0f}s")
    return 1 if total_alarms else 0


if __name__ == "__main__":
    sys.exit(main())
