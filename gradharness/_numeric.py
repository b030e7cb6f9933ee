"""The numerical engine: directional probes for the verdict, element-wise differences to localize.

Everything here is float64 and follows the error model in `_tolerance`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._strategies import unit_noise
from ._tolerance import (KINK_RETRIES, KINK_SHARE, LARGE_TENSOR, LOCALIZE_MAX, PROBES_PER_TENSOR, ROUNDOFF_WEIGHT, SAFETY,
                         Precision, relative_step)

Loss = Callable[[np.ndarray], float]


@dataclass
class Stencil:
    """Loss values along one direction and what they say about the derivative there."""

    t: float
    richardson: float
    error: float          # estimated |richardson - true|, before SAFETY
    kink: bool
    lo: float             # hull of the one-sided differences (meaningful when kink)
    hi: float


def stencil(phi: Callable[[float], float], phi0: float, t: float, noise: float) -> Stencil:
    """Central and Richardson differences at steps t and 2t, their error, and a kink test.

    The four unit slopes left and right of 0 form an almost linear sequence for a smooth
    function (their second differences are t^2 times the third derivative); a kink anywhere
    in [-2t, 2t] breaks it. Those second differences also bound the Richardson error, so a
    kink too small to be flagged still widens the tolerance by as much as it can move the estimate.
    """
    fp1, fm1, fp2, fm2 = phi(t), phi(-t), phi(2 * t), phi(-2 * t)
    d1 = (fp1 - fm1) / (2 * t)
    d2 = (fp2 - fm2) / (4 * t)
    rich = (4 * d1 - d2) / 3
    slopes = ((fm1 - fm2) / t, (phi0 - fm1) / t, (fp1 - phi0) / t, (fp2 - fp1) / t)
    steps = [b - a for a, b in zip(slopes, slopes[1:])]
    bends = [b - a for a, b in zip(steps, steps[1:])]
    third = max(abs(b) for b in bends)
    # each slope carries 2 * noise / t; a second difference of slopes weighs four of them
    slope_noise = 8 * noise / t
    err = ROUNDOFF_WEIGHT * noise / t + max(abs(d1 - d2), third)
    kink = third > SAFETY * slope_noise and third > KINK_SHARE * max(abs(d) for d in steps)
    sided = slopes + ((fp2 - phi0) / (2 * t), (phi0 - fm2) / (2 * t))
    return Stencil(t, float(rich), float(err), bool(kink), float(min(sided)), float(max(sided)))


@dataclass
class Probe:
    analytic: float
    numeric: float
    tol: float
    kink: bool
    support: int
    ok: bool | None       # None: inconclusive (a kink the analytic value cannot be checked against)
    norm: float           # ||g|| * ||v||: the scale the sensitivity is relative to


@dataclass
class ProbeVerdict:
    """All probes of one tensor on one example."""

    probes: list[Probe] = field(default_factory=list)

    @property
    def failed(self) -> list[Probe]:
        return [p for p in self.probes if p.ok is False]

    @property
    def conclusive(self) -> list[Probe]:
        return [p for p in self.probes if p.ok is not None]

    def sensitivity(self) -> float:
        """Largest relative error the verdict could have missed: max tol / (||g|| ||v||)."""
        vals = [p.tol / p.norm for p in self.conclusive if p.norm > 0]
        return max(vals) if vals else float("nan")

    def worst(self) -> Probe | None:
        bad = self.failed
        if not bad:
            return None
        return max(bad, key=lambda p: abs(p.analytic - p.numeric) / max(p.tol, 1e-300))


def observed_roundoff(gap: float, scale: float, prec: Precision) -> float:
    """The gap between a low-precision gradient and the same layer's float64 one, as round-off,
    but never more than sqrt(eps) of the gradient: a larger gap is a dtype-specific bug."""
    return min(abs(gap), np.sqrt(prec.eps) * scale) / SAFETY


def tensor_step(theta: np.ndarray) -> float:
    """Step along a unit-RMS direction: relative to the tensor's own RMS."""
    rms = float(np.sqrt(np.mean(np.square(theta)))) if theta.size else 0.0
    return relative_step() * (rms if rms > 1e-8 else 1.0)


@dataclass
class Bounds:
    """The error estimates a probe needs: cheap ones from the model, and measured ones on demand.

    `noise` bounds one loss evaluation's round-off; `measured` a gradient element's. `refine`
    returns (noise, measured) from re-running the layer on inputs moved by a few ulps; it costs
    a forward and a backward, so it is called only when a probe would fail without it.
    """

    noise: float
    measured: float = 0.0
    refine: Callable[[], tuple[float, float]] | None = None
    refined: bool = False

    def sharpen(self) -> bool:
        """Take the measured estimates (once); whether anything changed."""
        if self.refined or self.refine is None:
            return False
        self.refined = True
        noise, measured = self.refine()
        changed = noise > self.noise or measured > self.measured
        self.noise, self.measured = max(self.noise, noise), max(self.measured, measured)
        return changed


def probe_tensor(loss: Loss, phi0: float, theta: np.ndarray, grad: np.ndarray, *, noise: float | Bounds,
                 analytic_prec: Precision, terms: int, rng: np.random.Generator, natural: float = 0.0,
                 reference: np.ndarray | None = None, measured: float = 0.0,
                 probes: int | None = None) -> ProbeVerdict:
    """Directional probes of one tensor: <grad, v> against d/dt loss(theta + t v), v random uniform (unit_noise).

    Each probe first takes the central difference at +-t (two forwards): an analytic value
    that matches it to round-off passes at once (a layer linear in the tensor always does).
    Otherwise +-2t are added for the Richardson estimate, its truncation error and the kink
    test. A probe that straddles a kink is accepted when the analytic value lies between the
    one-sided differences; otherwise it is retried with a sparser direction (fewer elements,
    fewer kinks), and left inconclusive when no retry avoids them. `natural` is the per-element
    magnitude of the gradient before cancellation (see Context.natural), which the analytic
    side's round-off is relative to. `reference` is the layer's own float64 gradient when
    `grad` was computed in a lower precision: its gap to `grad` (capped, see observed_roundoff)
    is that precision's real round-off. `noise` may be a Bounds whose measured estimates are
    taken only when a probe would fail on the model's.
    """
    bounds = noise if isinstance(noise, Bounds) else Bounds(float(noise), measured)
    if probes is None:
        probes = 1 if theta.size >= LARGE_TENSOR else PROBES_PER_TENSOR
    verdict = ProbeVerdict()
    g = np.asarray(grad, dtype=np.float64)
    g_norm = float(np.sqrt(np.sum(g * g)))
    g_abs = np.maximum(np.abs(g), natural)
    t = tensor_step(theta)
    n = theta.size
    # two buffers, taken in turn, hold every step's value: the loss is read before the next
    # step, and no two steps in a row hand the layer the same array (a layer caching what it
    # derives from a param by the array's identity is params-live's to report, not a kink here)
    bufs = (np.empty(theta.shape, dtype=np.float64), np.empty(theta.shape, dtype=np.float64))
    steps = itertools.cycle(bufs)
    buf = bufs[0]  # scratch for <g, v>, taken before any step of the direction
    for _ in range(probes):
        support = n
        for attempt in range(KINK_RETRIES + 1):
            v = unit_noise(rng, theta.shape)
            if support < n:
                mask = np.zeros(n, dtype=bool)
                mask[rng.choice(n, size=support, replace=False)] = True
                v = v * mask.reshape(theta.shape)
            # <g, v> summed pairwise (its round-off is part of the tolerance); the magnitudes
            # below only scale tolerances and the report, so BLAS dot products will do
            np.multiply(g, v, out=buf)
            a = float(np.sum(buf))
            abs_v = np.abs(v)
            norm = g_norm * float(np.sqrt(np.vdot(v, v)))
            abs_gv = float(np.vdot(abs_v, g_abs))
            sum_v = float(np.sum(abs_v))
            ref_gap = None if reference is None else (float(np.sum((g - reference) * v)),
                                                      float(np.sum(np.abs(reference * v))))

            def e_analytic() -> float:
                e = max(analytic_prec.eps * analytic_prec.growth(terms) * abs_gv, bounds.measured * sum_v)
                if ref_gap is not None:
                    e = max(e, observed_roundoff(ref_gap[0], ref_gap[1], analytic_prec))
                return e

            vals: dict[float, float] = {}

            def phi(tt: float) -> float:
                if tt not in vals:
                    step = next(steps)
                    np.multiply(v, tt, out=step)
                    np.add(step, theta, out=step)
                    vals[tt] = loss(step)
                return vals[tt]

            central = (phi(t) - phi(-t)) / (2 * t)
            fast_tol = SAFETY * (bounds.noise / t + e_analytic())
            if abs(a - central) <= fast_tol or (bounds.sharpen() and
                                                abs(a - central) <= SAFETY * (bounds.noise / t + e_analytic())):
                verdict.probes.append(Probe(a, central, float(SAFETY * (bounds.noise / t + e_analytic())), False,
                                            support, True, norm))
                break
            s = stencil(phi, phi0, t, bounds.noise)
            tol = SAFETY * (s.error + e_analytic())
            if not s.kink:
                verdict.probes.append(Probe(a, s.richardson, float(tol), False, support,
                                            bool(abs(a - s.richardson) <= tol), norm))
                break
            slack = SAFETY * (ROUNDOFF_WEIGHT * bounds.noise / t + e_analytic())
            if s.lo - slack <= a <= s.hi + slack:
                verdict.probes.append(Probe(a, s.richardson, tol + (s.hi - s.lo), True, support, True, norm))
                break
            if support <= 1 or attempt == KINK_RETRIES:
                verdict.probes.append(Probe(a, s.richardson, tol, True, support, None, norm))
                break
            support = max(1, support // 2)
    return verdict


@dataclass
class Localized:
    """Element-wise comparison of one tensor's analytic and numeric gradients."""

    indices: np.ndarray          # (k, ndim) flat subset that was compared
    analytic: np.ndarray
    numeric: np.ndarray
    tol: np.ndarray
    kink: np.ndarray
    total: int                   # numel of the tensor
    full: bool                   # every element compared (numeric is then the whole gradient)

    @property
    def bad(self) -> np.ndarray:
        return (np.abs(self.analytic - self.numeric) > self.tol) & ~self.kink


def localize(loss: Loss, phi0: float, theta: np.ndarray, grad: np.ndarray, *, noise: float,
             analytic_prec: Precision, terms: int, rng: np.random.Generator, natural: float = 0.0,
             reference: np.ndarray | None = None, measured: float = 0.0,
             limit: int = LOCALIZE_MAX) -> Localized:
    """Numeric derivative element by element (all elements of a small tensor, a random subset of a large one)."""
    n = theta.size
    full = n <= limit
    flat_idx = np.arange(n) if full else np.sort(rng.choice(n, size=limit, replace=False))
    g = np.asarray(grad, dtype=np.float64).reshape(-1)
    ref_flat = None if reference is None else np.asarray(reference, dtype=np.float64).reshape(-1)
    t = tensor_step(theta)
    an, nu, tol, kink = [], [], [], []
    for i in flat_idx:
        e = np.zeros(n)
        e[i] = 1.0
        e = e.reshape(theta.shape)
        s = stencil(lambda tt: loss(theta + tt * e), phi0, t, noise)
        a = float(g[i])
        e_an = max(analytic_prec.eps * analytic_prec.growth(terms) * max(abs(a), natural), measured)
        if ref_flat is not None:
            e_an = max(e_an, observed_roundoff(a - float(ref_flat[i]), abs(float(ref_flat[i])), analytic_prec))
        tl = SAFETY * (s.error + e_an)
        is_kink = s.kink and (s.lo - tl <= a <= s.hi + tl)
        an.append(a)
        nu.append(s.richardson)
        tol.append(tl)
        kink.append(is_kink)
    idx = np.array(np.unravel_index(flat_idx, theta.shape)).T if theta.ndim else np.zeros((len(flat_idx), 0), int)
    return Localized(idx, np.array(an), np.array(nu), np.array(tol), np.array(kink, dtype=bool), n, full)
