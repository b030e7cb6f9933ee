"""The error model: every tolerance the checks use, per dtype, in one place.

A directional probe compares the analytic ``a = <g, v>`` with a Richardson
estimate ``R`` of ``d/dt L(theta + t v)`` built from ``L`` at ``t = +-h, +-2h``
in float64. Its error has three parts, each estimated, none a fixed atol:

* round-off of the loss evaluations: ``|L|`` is computed with relative error
  about ``eps * growth`` where ``growth`` covers the reductions inside the
  forward (``sqrt`` of the number of terms, pairwise summation); divided by
  the step it becomes ``ROUNDOFF_WEIGHT * eps * growth * S / h`` with
  ``S = sum |out * dout|``;
* truncation: bounded by ``|D(h) - D(2h)|`` (the gap between the central
  differences at two steps is ~``3 a h^2`` while the Richardson error is
  ``O(h^4)``) and by the bends of the one-sided slopes (a kink too small to flag);
  an analytic value that matches the central difference at ``h`` to round-off
  needs no truncation bound and passes on two evaluations;
* the analytic side's own round-off: ``eps_dtype * growth * sum |g * v|`` in the
  dtype the layer ran in (this is what makes float32 bounds float32-appropriate).

Cancellation inside a black-box layer (x - target near the target, a normalization
of nearly equal values, a softmax Jacobian) carries round-off far above what the
magnitudes of the results suggest. It is measured, not modelled: every input is
moved by a few ulps and the layer re-run (`Context.roundoff`,
`Context.loss_noise_measured`); each bound above is at least what that shows.

The sum is multiplied by ``SAFETY``. Steps are ``h = eps64 ** (1/4)`` relative to
the tensor's RMS, between the optimum of a central difference (``eps^(1/3)``)
and of the 5-point rule (``eps^(1/5)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: multiplies every estimated error bound before a verdict
SAFETY = 8.0
#: weight of the evaluation round-off in the 4-point Richardson rule: (4 * 1/(2h) * 2 + 1/(4h) * 2) / 3
ROUNDOFF_WEIGHT = 1.5
#: a kink (non-differentiable point) is declared when the 4th difference is at least
#: this share of the 2nd differences (smooth: ~(h/scale)^2, a kink at 0: 2/3)
KINK_SHARE = 0.05
#: sparser probe directions tried, halving the support each time, before a kinked probe is inconclusive
KINK_RETRIES = 10
#: how many ulps (at most) every input is moved by to measure how much round-off each
#: returned array really carries (see Context.roundoff)
JITTER_ULPS = 4
#: directional probes per tensor and example; a random (uniform) direction misses a given error only
#: when it is nearly orthogonal to it (probability ~ the tolerance's share of the error, for
#: any size), so the second probe buys little and a large tensor, where forwards cost, gets one
PROBES_PER_TENSOR = 2
#: elements from which a tensor gets a single probe per example (and its drawn values are
#: uniform rather than normal, see _strategies.value_noise)
LARGE_TENSOR = 4096
#: largest tensor localized element by element; larger ones get a random subset of this size
LOCALIZE_MAX = 2048
#: worst elements listed in a message
WORST_SHOWN = 5


@dataclass(frozen=True)
class Precision:
    """Round-off of one floating dtype and the tolerances derived from it."""

    dtype: np.dtype
    eps: float

    def growth(self, terms: int) -> float:
        """Error growth of a computation with `terms` elementwise operations and reductions."""
        return 4.0 + math.sqrt(max(terms, 1))

    def close(self, scale: float, terms: int) -> float:
        """Absolute tolerance for two computations of a value of magnitude `scale` that should agree."""
        return SAFETY * self.eps * self.growth(terms) * max(scale, np.finfo(np.float64).tiny)


REFERENCE = np.dtype(np.float64)


def precision(dtype: np.dtype | type) -> Precision:
    """The precision model of a floating dtype."""
    dt = np.dtype(dtype)
    return Precision(dtype=dt, eps=float(np.finfo(dt).eps))


def relative_step() -> float:
    """Finite-difference step relative to a tensor's RMS, derived from float64 round-off."""
    return float(np.finfo(REFERENCE).eps) ** 0.25
