"""The checks: each a small unit with a stable kebab-case name and a one-line docstring.

A check receives the `Context` of one example in one dtype, with the base trace
(forward on x, backward on dout) already taken, and returns None (passed),
NOT_APPLICABLE (this example cannot exercise it) or a Finding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._context import Context, same_values, shape_text
from ._numeric import Bounds, Localized, ProbeVerdict, localize, probe_tensor
from ._report import NOT_APPLICABLE, Finding, fmt
from ._spec import LayerSpec
from ._strategies import unit_noise
from ._tolerance import REFERENCE, SAFETY, WORST_SHOWN

Result = Any  # None | NOT_APPLICABLE | Finding


@dataclass(frozen=True)
class Check:
    """A registered check."""

    name: str
    doc: str
    fn: Callable[[Context], Result]
    applies: Callable[[LayerSpec], bool]
    every_dtype: bool


REGISTRY: dict[str, Check] = {}


def check(name: str, *, applies: Callable[[LayerSpec], bool] = lambda spec: True,
          every_dtype: bool = False) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Register a check under a stable name; its docstring's first line says what it catches."""

    def deco(fn: Callable[[Context], Result]) -> Callable[[Context], Result]:
        doc = (fn.__doc__ or "").strip().splitlines()[0].rstrip(".")
        REGISTRY[name] = Check(name, doc, fn, applies, every_dtype)
        return fn

    return deco


# `protocol` is checked while building each example (see _context.build_layer); it is listed
# here so that it has a name, a description and a place in the report.
REGISTRY["protocol"] = Check("protocol", "the factory builds a layer with forward, backward and a params dict",
                             lambda ctx: None, lambda spec: True, False)


# ----- helpers -------------------------------------------------------------------
def _returned(ctx: Context) -> list[tuple[str, np.ndarray]]:
    """The float arrays the base trace returned, by name: out, dx and every grad."""
    b = ctx.base
    assert b is not None
    arrays = [("out", b.out)] + ([] if b.dx is None else [("dx", b.dx)]) + [(f"grads[{k!r}]", g) for k, g in b.grads.items()]
    return [(name, a) for name, a in arrays if a.dtype.kind in "fc"]


def _all_finite(ctx: Context) -> bool:
    """Whether the base trace is finite (most checks need it; computed once per context)."""
    if "finite" not in ctx.memo:
        ctx.memo["finite"] = all(np.all(np.isfinite(a)) for _, a in _returned(ctx))
    return ctx.memo["finite"]


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


def _close(ctx: Context, a: np.ndarray, b: np.ndarray, scale: float | None = None,
           grad_of: str | None = None, weight: float = 1.0, output: bool = False) -> tuple[bool, float, float]:
    """Whether two arrays agree to the round-off of the run's dtype: (ok, max difference, tolerance).

    For gradients (`grad_of` names the tensor) the scale is at least the tensor's natural
    gradient magnitude (times `weight`, the size of the dout that produced them); for
    gradients and outputs the tolerance is at least their measured round-off (Context.roundoff).
    """
    if a.shape != b.shape:
        return False, float("inf"), 0.0
    if np.array_equal(a, b):
        return True, 0.0, 0.0  # bit-identical, as repeated deterministic calls usually are
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        diff = _max_abs(a64 - b64)
    if not np.isfinite(diff):
        diff = 0.0 if np.array_equal(a64, b64, equal_nan=True) else float("inf")
    largest = max(_max_abs(a64), _max_abs(b64))
    s = scale if scale is not None else largest
    if grad_of is not None:
        s = max(s, weight * ctx.natural(grad_of))
    tol = ctx.prec.close(s, ctx.terms())
    # the measured round-off never exceeds sqrt(eps) of the array (Context.roundoff): past that, no rescue
    rescuable = diff <= SAFETY * weight * np.sqrt(ctx.prec.eps) * max(s, largest)
    if diff > tol and (grad_of or output) and rescuable:
        # only a comparison that would fail pays for measuring the round-off (a jittered re-run)
        measured = ctx.roundoff("dx" if grad_of == "x" else grad_of) if grad_of else ctx.roundoff("out")
        tol = max(tol, SAFETY * weight * measured)
    return bool(diff <= tol), diff, tol


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


def _grad_ok(ctx: Context, name: str) -> bool:
    b = ctx.base
    assert b is not None
    g = b.grads.get(name)
    return g is not None and g.shape == ctx.params[name].shape


# ----- contracts ----------------------------------------------------------------
@check("forward-shape", every_dtype=True)
def forward_shape(ctx: Context) -> Result:
    """forward returns an array of exactly the declared output shape (no silent broadcast)."""
    spec, b = ctx.spec, ctx.base
    assert b is not None
    out = b.out
    if spec.output is not None:
        expected = ctx.expected_shape(spec.output)
        why = f"output={spec.output_text!r}"
    elif spec.elementwise:
        expected, why = tuple(ctx.x.shape), "an element-wise layer keeps the input's shape"
    else:
        if spec.batch_independent and spec.input and (out.ndim == 0 or out.shape[0] != ctx.x.shape[0]):
            return Finding("forward-shape", f"out has shape {out.shape} for a batch of {ctx.x.shape[0]}: the batch "
                           "axis is lost", "out", [f"x: {shape_text(ctx.x)}, out: {shape_text(out)}"],
                           {"shape": list(out.shape)})
        return None
    if tuple(out.shape) != expected:
        hint = _shape_hint(out.shape, expected)
        return Finding("forward-shape", f"out has shape {tuple(out.shape)}, expected {expected} ({why})", "out",
                       [f"x: {shape_text(ctx.x)}, dims: {ctx.sizes}"] + ([hint] if hint else []),
                       {"shape": list(out.shape), "expected": list(expected)})
    return None


def _shape_hint(got: tuple[int, ...], expected: tuple[int, ...]) -> str:
    if tuple(d for d in got if d != 1) == tuple(d for d in expected if d != 1) and got != expected:
        return "Only size-1 axes differ: a keepdims=True reduction or a broadcast (1, d) where (d,) is due?"
    if sorted(got) == sorted(expected):
        return "The same sizes in another order: a missing or extra transpose?"
    return ""


@check("backward-shape", every_dtype=True)
def backward_shape(ctx: Context) -> Result:
    """backward returns dx of x's shape and sets one gradient of each param's exact shape."""
    b = ctx.base
    assert b is not None
    problems: list[str] = []
    ev: dict[str, Any] = {}
    tensor = None
    if ctx.spec.index_input is None:
        if b.dx is None:
            problems.append("backward returned None, expected dx of x's shape")
            tensor = "dx"
        elif b.dx.shape != ctx.x.shape:
            problems.append(f"dx has shape {b.dx.shape}, x has shape {ctx.x.shape}. {_shape_hint(b.dx.shape, ctx.x.shape)}")
            tensor = "dx"
            ev["shape"], ev["expected"] = list(b.dx.shape), list(ctx.x.shape)
    missing = [k for k in ctx.params if k not in b.grads]
    extra = [k for k in b.grads if k not in ctx.params]
    if missing:
        problems.append(f"backward did not set grads for {missing} (grads has {sorted(b.grads)})")
        tensor = tensor or missing[0]
    if extra:
        problems.append(f"grads has keys {extra} that are not params (params: {sorted(ctx.params)})")
    for k, g in b.grads.items():
        if k in ctx.params and g.shape != ctx.params[k].shape:
            problems.append(f"grads[{k!r}] has shape {g.shape}, params[{k!r}] has shape {ctx.params[k].shape}. "
                            f"{_shape_hint(g.shape, ctx.params[k].shape)}".rstrip())
            if tensor is None:
                ev["shape"], ev["expected"] = list(g.shape), list(ctx.params[k].shape)
            tensor = tensor or k
    if problems:
        ev["problems"] = problems
        return Finding("backward-shape", problems[0], tensor, problems[1:], ev)
    return None


@check("dtype", every_dtype=True)
def dtype_contract(ctx: Context) -> Result:
    """out, dx and every grad keep the dtype of x, dout and the params."""
    b = ctx.base
    assert b is not None
    bad = []
    if b.out.dtype != ctx.dtype:
        bad.append(("out", b.out.dtype))
    if b.dx is not None and ctx.spec.index_input is None and b.dx.dtype != ctx.dtype:
        bad.append(("dx", b.dx.dtype))
    for k, g in b.grads.items():
        if g.dtype != ctx.dtype:
            bad.append((f"grads[{k!r}]", g.dtype))
    if not bad:
        return None
    what = ", ".join(f"{n} is {d}" for n, d in bad)
    hint = ("A float64 constant, mask or np.zeros(shape) without dtype= promotes the result."
            if ctx.dtype.itemsize < 8 else "An integer or lower-precision intermediate leaks into the result.")
    return Finding("dtype", f"{what} for {ctx.dtype} inputs, dout and params", bad[0][0], [hint],
                   {"arrays": {n: str(d) for n, d in bad}})


@check("finite", every_dtype=True)
def finite(ctx: Context) -> Result:
    """out, dx and every grad are finite for inputs in the domain."""
    if _all_finite(ctx):
        return None
    for name, a in _returned(ctx):
        bad = ~np.isfinite(a)
        if np.any(bad):
            idx = _first_index(bad)
            return Finding("finite", f"{name} has {int(bad.sum())} non-finite values of {a.size} "
                           f"(first at {idx}: {a[idx] if a.ndim else a})", name,
                           ["Overflow in exp (subtract the max first), a division by zero or log(0)?"],
                           {"count": int(bad.sum()), "index": list(idx)})
    return None


# ----- gradients ----------------------------------------------------------------
def _noise(ctx: Context) -> tuple[float, float]:
    """phi0 = L at the base point and the modelled round-off of one loss evaluation (float64)."""
    key = "noise"
    if key not in ctx.memo:
        phi0 = float(np.sum(ctx.out_ref() * ctx.dout_ref))
        noise = ctx.ref.eps * ctx.ref.growth(ctx.terms()) * (ctx.loss_scale() + abs(phi0))
        ctx.memo[key] = (phi0, noise)
    return ctx.memo[key]


def _bounds(ctx: Context, tensor: str) -> Bounds:
    """The model's error bounds, with the measured ones (a jittered re-run) available on demand."""
    _, noise = _noise(ctx)
    array = "dx" if tensor == "x" else tensor
    if ctx.memo.get("refined"):
        return Bounds(max(noise, ctx.loss_noise_measured()), ctx.roundoff(array), None, True)

    def refine() -> tuple[float, float]:
        ctx.memo["refined"] = True
        return ctx.loss_noise_measured(), ctx.roundoff(array)

    return Bounds(noise, 0.0, refine)


def _against_verified(ctx: Context, tensor: str, grad: np.ndarray) -> bool:
    """In a lower precision, whether `grad` matches the layer's own float64 gradient at this
    example's rounded values, for a tensor whose float64 gradient this example already
    verified numerically (Context.verified): then it is as right as that one, up to this
    dtype's round-off, and needs no probes of its own. Otherwise the probes decide.

    Any error of the low-precision gradient shows as a gap to the float64 one; an error both
    dtypes share was the float64 run's to find. The sensitivity is this comparison's relative
    tolerance on top of the float64 run's.
    """
    if ctx.dtype == REFERENCE or tensor not in ctx.verified:
        return False
    ref = ctx.grad_ref(tensor)
    if ref is None or ref.shape != grad.shape or not np.all(np.isfinite(ref)):
        return False
    ok, _, tol = _close(ctx, grad, ref, grad_of=tensor)
    if ok:
        scale = max(_max_abs(ref), ctx.natural(tensor))
        if scale > 0:
            sens = ctx.memo.setdefault("sensitivity", {})
            sens[tensor] = max(sens.get(tensor, 0.0), tol / scale + ctx.verified[tensor])
    return ok


def _probe(ctx: Context, tensor: str, value: np.ndarray, grad: np.ndarray) -> ProbeVerdict:
    if _against_verified(ctx, tensor, grad):
        return ProbeVerdict()
    phi0, _ = _noise(ctx)
    verdict = probe_tensor(lambda v: ctx.loss_ref(tensor, v), phi0, value, grad, noise=_bounds(ctx, tensor),
                           analytic_prec=ctx.prec, terms=ctx.terms(), rng=ctx.rng, natural=ctx.natural(tensor),
                           reference=ctx.grad_ref(tensor))
    sens = ctx.memo.setdefault("sensitivity", {})
    s = verdict.sensitivity()
    if np.isfinite(s):
        sens[tensor] = max(sens.get(tensor, 0.0), s)
    ctx.memo["inconclusive"] = ctx.memo.get("inconclusive", 0) + sum(p.ok is None for p in verdict.probes)
    if ctx.dtype == REFERENCE and verdict.probes and all(p.ok for p in verdict.probes):
        ctx.verified[tensor] = s
    return verdict


def _localize(ctx: Context, tensor: str, value: np.ndarray, grad: np.ndarray) -> Localized:
    phi0, noise = _noise(ctx)
    noise = max(noise, ctx.loss_noise_measured())
    return localize(lambda v: ctx.loss_ref(tensor, v), phi0, value, grad, noise=noise,
                    analytic_prec=ctx.prec, terms=ctx.terms(), rng=ctx.rng, natural=ctx.natural(tensor),
                           reference=ctx.grad_ref(tensor))


def _grad_finding(ctx: Context, check_name: str, tensor: str, label: str, value: np.ndarray,
                  grad: np.ndarray, verdict: ProbeVerdict) -> Finding:
    worst = verdict.worst()
    assert worst is not None
    lines = [f"shape {value.shape}, dtype {ctx.dtype}; L = sum(out * dout), numeric side in float64"]
    ev: dict[str, Any] = {
        "probe_analytic": worst.analytic, "probe_numeric": worst.numeric, "probe_tolerance": worst.tol,
        "probe_relative_error": abs(worst.analytic - worst.numeric) / max(abs(worst.numeric), abs(worst.analytic), 1e-300),
    }
    data: dict[str, Any] = {"value": value, "grad": grad, "verdict": verdict}
    if ctx.detail:
        loc = _localize(ctx, tensor, value, grad)
        data["localized"] = loc
        bad = loc.bad
        k, n = int(bad.sum()), len(loc.analytic)
        diff = np.abs(loc.analytic - loc.numeric)
        rel = diff / np.maximum(np.maximum(np.abs(loc.numeric), np.abs(loc.analytic)), 1e-300)
        subset = "" if loc.full else f" (a random subset of {n} of {loc.total} elements)"
        lines.append(f"Mismatched elements: {k} / {n} ({100.0 * k / max(n, 1):.3g}%){subset}")
        order = np.argsort(-np.where(bad, diff / np.maximum(loc.tol, 1e-300), -1.0))[: min(WORST_SHOWN, max(k, 1))]
        lines.append(f"{'index':>14}  {'ANALYTIC':>14}  {'NUMERIC':>14}")
        for i in order:
            idx = tuple(int(j) for j in loc.indices[i])
            lines.append(f"{str(idx):>14}  {fmt(loc.analytic[i]):>14}  {fmt(loc.numeric[i]):>14}")
        lines.append(f"Max absolute difference: {fmt(float(diff.max()) if diff.size else 0.0).strip()}")
        lines.append(f"Max relative difference: {fmt(float(rel.max()) if rel.size else 0.0).strip()}")
        ev.update({"mismatched": k, "compared": n, "total": loc.total,
                   "max_abs": float(diff.max()) if diff.size else 0.0,
                   "max_rel": float(rel.max()) if rel.size else 0.0,
                   "worst": [{"index": [int(j) for j in loc.indices[i]], "analytic": float(loc.analytic[i]),
                              "numeric": float(loc.numeric[i])} for i in order]})
        if loc.full and value.size <= 4096:
            ev["numeric_gradient"] = loc.numeric.reshape(value.shape).tolist()
            ev["analytic_gradient"] = np.asarray(grad, dtype=np.float64).tolist()
    lines.append(f"Directional probe: <{label}, v> = {fmt(worst.analytic).strip()} analytic, "
                 f"{fmt(worst.numeric).strip()} numeric, tolerance {worst.tol:.2g}")
    return Finding(check_name, f"{label} does not match the numerical derivative", tensor, lines, ev, data=data)


@check("grad-input", applies=lambda spec: spec.differentiable_input, every_dtype=True)
def grad_input(ctx: Context) -> Result:
    """dx matches the numerical derivative of L = sum(out * dout) with respect to x."""
    b = ctx.base
    assert b is not None
    if b.dx is None or b.dx.shape != ctx.x.shape or not _all_finite(ctx) or ctx.x.size == 0:
        return NOT_APPLICABLE
    verdict = _probe(ctx, "x", ctx.x_ref, b.dx)
    if verdict.failed:
        return _grad_finding(ctx, "grad-input", "x", "dx", ctx.x_ref, b.dx, verdict)
    return None


@check("grad-params", applies=lambda spec: True, every_dtype=True)
def grad_params(ctx: Context) -> Result:
    """every param's gradient matches its numerical derivative (each tensor probed separately)."""
    b = ctx.base
    assert b is not None
    names = [k for k in ctx.params if _grad_ok(ctx, k) and ctx.params[k].size]
    if not names or not _all_finite(ctx):
        return NOT_APPLICABLE
    findings = []
    for k in names:
        verdict = _probe(ctx, k, ctx.params_ref[k], b.grads[k])
        if not verdict.failed:
            ctx.memo.setdefault("verified", set()).add(k)
        if verdict.failed:
            findings.append(_grad_finding(ctx, "grad-params", k, f"grads[{k!r}]", ctx.params_ref[k], b.grads[k], verdict))
    if not findings:
        return None
    first = findings[0]
    for other in findings[1:]:
        first.lines.append(f"Also: {other.summary} (array {other.tensor!r})")
        first.evidence.setdefault("also", []).append(other.tensor)
    return first


# ----- bias ------------------------------------------------------------------------
def _split(ctx: Context) -> Any:
    """Traces of the two halves of the batch (shared by the batch checks)."""
    if "split" not in ctx.memo:
        n = ctx.x.shape[0]
        k = n // 2
        assert ctx.dout is not None
        a = ctx.trace(ctx.x[:k], ctx.dout[:k])
        c = ctx.trace(ctx.x[k:], ctx.dout[k:])
        ctx.memo["split"] = (k, a, c)
    return ctx.memo["split"]


def _can_split(ctx: Context) -> bool:
    b = ctx.base
    assert b is not None and ctx.dout is not None
    return (ctx.spec.batch_independent and ctx.x.ndim >= 1 and ctx.x.shape[0] >= 2
            and b.out.ndim >= 1 and b.out.shape[0] == ctx.x.shape[0] and ctx.dout.shape == b.out.shape)


def _bias_applies(spec: LayerSpec) -> bool:
    return spec.bias is None or len(spec.bias) > 0


@check("bias", applies=_bias_applies)
def bias(ctx: Context) -> Result:
    """each declared bias moves the output, and its gradient is dout summed over the broadcast axes."""
    b = ctx.base
    assert b is not None and ctx.dout is not None
    names = [k for k in ctx.spec.bias_names(ctx.params) if k in ctx.params and _grad_ok(ctx, k)]
    if not names or not _all_finite(ctx):
        return NOT_APPLICABLE
    out_ref = ctx.out_ref()
    # one bias per example; the examples take turns over all of them
    for k in [names[int(ctx.rng.integers(len(names)))]]:
        p = ctx.params_ref[k]
        delta = unit_noise(ctx.rng, p.shape) * max(float(np.sqrt(np.mean(p**2))), 1.0) * 0.5
        params = dict(ctx.params_ref)
        params[k] = p + delta
        moved = ctx.forward(ctx.x_ref, params).astype(np.float64) - out_ref
        g = np.asarray(b.grads[k], dtype=np.float64)
        if _max_abs(moved) <= ctx.ref.close(max(_max_abs(out_ref), 1.0), ctx.terms()):
            # a bias behind a nonlinearity that is flat here (a dead ReLU) moves nothing, and
            # then its gradient is zero too; a gradient without an effect is the bug
            if _max_abs(g) > np.sqrt(ctx.prec.eps) * max(ctx.natural(k), _max_abs(ctx.dout_ref)):
                return Finding("bias", f"changing {k!r} does not change the output, yet grads[{k!r}] is nonzero: "
                               "the bias is not used in forward", k,
                               [f"max |out(b + delta) - out(b)| = {_max_abs(moved):.3g}, max |grads[{k!r}]| = "
                                f"{_max_abs(g):.3g}"], {"moved": _max_abs(moved)})
            continue
        if _can_split(ctx) and g.size:
            n_a, ta, tc = _split(ctx)
            ga, gc = ta.grads.get(k), tc.grads.get(k)
            if ga is not None and gc is not None and ga.shape == g.shape == gc.shape:
                ok, diff, tol = _close(ctx, g, ga + gc, scale=_max_abs(ga) + _max_abs(gc) + _max_abs(g), grad_of=k)
                if not ok:
                    ratio = _ratio(g, ga + gc)
                    return Finding("bias", f"grads[{k!r}] of the batch is not the sum over its sub-batches: "
                                   "the bias gradient is not summed over the batch axis", k,
                                   [f"rows [0:{n_a}] and [{n_a}:{ctx.x.shape[0]}]: max difference {diff:.3g} "
                                    f"(tolerance {tol:.2g})",
                                    f"full / (sum of parts) = {ratio}" if ratio else
                                    "A mean over the batch, only the first sample (dout[0]), or the wrong axis?"],
                                   {"max_abs": diff, "ratio": ratio})
        # an output-additive bias moves out by a broadcast of delta, whatever x, linearly in delta;
        # then the change of L is exact (no truncation) and pins its gradient down
        additive = False
        # a gradient grad-params just verified needs no second, exact test
        if ctx.spec.index_input is None and k not in ctx.memo.get("verified", ()):
            x2 = ctx.x_ref + unit_noise(ctx.rng, ctx.x_ref.shape) * 0.5
            base2 = ctx.forward(x2, ctx.params_ref).astype(np.float64)
            moved_other = ctx.forward(x2, params).astype(np.float64) - base2
            twice = dict(params)
            twice[k] = p + 2 * delta
            moved_twice = ctx.forward(ctx.x_ref, twice).astype(np.float64) - out_ref
            additive = (_close(ctx, moved, moved_other, scale=_max_abs(moved), output=True, weight=2)[0]
                        and _close(ctx, moved_twice, 2 * moved, scale=2 * _max_abs(moved), output=True, weight=3)[0])
        if additive:
            d_loss = float(np.sum(moved * ctx.dout_ref))
            pred = float(np.sum(g * delta))
            _, noise = _noise(ctx)
            tol = 8 * ctx.prec.close(float(np.sum(np.abs(g * delta))) + abs(d_loss), ctx.terms()) + 8 * noise
            if abs(pred - d_loss) > tol:
                exp = _sum_to(ctx.dout_ref, p.shape, moved, delta)
                lines = [f"<grads[{k!r}], delta> = {fmt(pred).strip()}, change of L = {fmt(d_loss).strip()} "
                         f"(exact for an additive bias; tolerance {tol:.2g})"]
                if exp is not None:
                    lines.append(f"dout summed over the broadcast axes gives {np.array2string(exp.reshape(-1)[:6], precision=4)}, "
                                 f"the layer gave {np.array2string(g.reshape(-1)[:6], precision=4)}")
                return Finding("bias", f"grads[{k!r}] is not dout summed over the axes the bias is broadcast along",
                               k, lines, {"predicted": pred, "actual": d_loss})
    return None


def _ratio(a: np.ndarray, b: np.ndarray) -> str:
    """A constant ratio a / b, if there is one."""
    mask = np.abs(b) > 1e-12 * max(_max_abs(b), 1e-300)
    if not np.any(mask):
        return ""
    r = a[mask] / b[mask]
    if np.allclose(r, r.reshape(-1)[0], rtol=1e-6, atol=0):
        return f"{float(r.reshape(-1)[0]):.6g} everywhere"
    return ""


def _sum_to(dout: np.ndarray, shape: tuple[int, ...], moved: np.ndarray, delta: np.ndarray) -> np.ndarray | None:
    """dout summed over the axes where `moved` is `delta` broadcast (None when it is not a plain broadcast)."""
    try:
        if np.allclose(np.broadcast_to(delta, moved.shape), moved, rtol=1e-8, atol=1e-10):
            extra = moved.ndim - len(shape)
            s = dout.sum(axis=tuple(range(extra))) if extra > 0 else dout
            axes = tuple(i for i, d in enumerate(shape) if d == 1 and s.shape[i] != 1)
            return s.sum(axis=axes, keepdims=True) if axes else s
    except ValueError:
        return None
    # channel bias (conv): delta of shape (f,) along axis 1 of (n, f, h, w)
    if moved.ndim == 4 and delta.ndim == 1 and moved.shape[1] == delta.shape[0]:
        return dout.sum(axis=(0, 2, 3))
    return None


# ----- batch ---------------------------------------------------------------------
@check("param-grad-additivity", applies=lambda spec: spec.batch_independent)
def param_grad_additivity(ctx: Context) -> Result:
    """param grads of a batch equal the sum of its sub-batches' (catches mean-vs-sum, first-sample-only)."""
    b = ctx.base
    assert b is not None
    names = [k for k in ctx.params if _grad_ok(ctx, k)]
    if not names or not _can_split(ctx) or not _all_finite(ctx):
        return NOT_APPLICABLE
    n_a, ta, tc = _split(ctx)
    for k in names:
        g, ga, gc = b.grads[k], ta.grads.get(k), tc.grads.get(k)
        if ga is None or gc is None or ga.shape != g.shape or gc.shape != g.shape:
            continue
        ok, diff, tol = _close(ctx, g, ga + gc, scale=_max_abs(ga) + _max_abs(gc) + _max_abs(g), grad_of=k)
        if not ok:
            ratio = _ratio(np.asarray(g, dtype=np.float64), (ga + gc).astype(np.float64))
            n = ctx.x.shape[0]
            hint = "A mean over the batch where the loss sums, only the first sample, or a stale cache?"
            if ratio:
                hint = f"full / (sum of parts) = {ratio}"
            return Finding("param-grad-additivity", f"grads[{k!r}] of the batch != grads of rows [0:{n_a}] + "
                           f"rows [{n_a}:{n}]", k, [f"max difference {diff:.3g} (tolerance {tol:.2g})", hint],
                           {"max_abs": diff, "ratio": ratio})
    return None


@check("batch-independence", applies=lambda spec: spec.batch_independent)
def batch_independence(ctx: Context) -> Result:
    """out row i depends on x row i only (catches normalizing over the batch axis)."""
    b = ctx.base
    assert b is not None
    if not _can_split(ctx) or not _all_finite(ctx):
        return NOT_APPLICABLE
    n = ctx.x.shape[0]
    n_a, ta, tc = _split(ctx)
    for rows, part in ((slice(0, n_a), ta), (slice(n_a, n), tc)):
        ok, diff, tol = _close(ctx, part.out, b.out[rows], output=True)
        if not ok:
            return Finding("batch-independence", f"out of rows [{rows.start}:{rows.stop}] alone differs from "
                           "those rows of the whole batch: rows influence each other", "out",
                           [f"max difference {diff:.3g} (tolerance {tol:.2g})",
                            "A statistic over the batch axis (mean, std, softmax over axis 0)? Declare "
                            "batch_independent=False if that is intended (BatchNorm)."], {"max_abs": diff})
        if part.dx is not None and b.dx is not None and b.dx.shape == ctx.x.shape:
            ok, diff, tol = _close(ctx, part.dx, b.dx[rows], grad_of="x")
            if not ok:
                return Finding("batch-independence", f"dx of rows [{rows.start}:{rows.stop}] alone differs from "
                               "those rows of the whole batch: backward mixes samples", "dx",
                               [f"max difference {diff:.3g} (tolerance {tol:.2g})"], {"max_abs": diff})
    if ctx.spec.index_input is None:
        j = int(ctx.rng.integers(0, n))
        x2 = ctx.x.copy()
        x2[j] = x2[j][::-1].copy() + 0.25 if x2[j].ndim else x2[j] + 0.25
        out2 = ctx.forward(x2)
        others = np.ones(n, dtype=bool)
        others[j] = False
        ok, diff, tol = _close(ctx, out2[others], b.out[others], output=True)
        if not ok:
            return Finding("batch-independence", f"changing x row {j} changed out in other rows", "out",
                           [f"max difference {diff:.3g} (tolerance {tol:.2g})"], {"row": j, "max_abs": diff})
    return None


@check("elementwise", applies=lambda spec: spec.elementwise)
def elementwise(ctx: Context) -> Result:
    """a layer declared element-wise has a diagonal Jacobian, forward and backward."""
    b = ctx.base
    assert b is not None and ctx.dout is not None
    if b.out.shape != ctx.x.shape:
        return Finding("elementwise", f"out has shape {b.out.shape}, x has {ctx.x.shape}: not element-wise", "out")
    if ctx.x.size < 2 or not _all_finite(ctx):
        return NOT_APPLICABLE
    mask = ctx.rng.random(ctx.x.shape) < 0.5
    if mask.all() or not mask.any():
        mask.reshape(-1)[0] = not mask.reshape(-1)[0]
    x2 = ctx.x + np.where(mask, 0.1, 0.0).astype(ctx.dtype)
    out2 = ctx.forward(x2)
    moved = (out2 != b.out) & ~mask
    ok, diff, tol = _close(ctx, np.where(mask, 0, out2), np.where(mask, 0, b.out), output=True)
    if not ok:
        idx = _first_index(moved)
        return Finding("elementwise", f"out{list(idx)} changed when only other elements of x moved: the layer mixes "
                       "elements", "out", ["Declared elementwise=True; a softmax or normalization is not."],
                       {"index": list(idx), "max_abs": diff})
    ctx.forward(ctx.x)
    dx, _ = ctx.backward(np.where(mask, ctx.dout, 0).astype(ctx.dtype))
    if dx is not None and dx.shape == ctx.x.shape:
        leak = np.where(mask, 0, dx)
        ok, diff, tol = _close(ctx, leak, np.zeros_like(leak), scale=_max_abs(b.dx) if b.dx is not None else 1.0,
                               grad_of="x")
        if not ok:
            idx = _first_index(np.abs(leak) > tol)
            return Finding("elementwise", f"dx{list(idx)} is nonzero where dout is zero: backward is not diagonal",
                           "dx", ["An element-wise layer's dx[i] depends on dout[i] only."],
                           {"index": list(idx), "max_abs": diff})
    return None


# ----- backward behaviour --------------------------------------------------------
@check("backward-linearity")
def backward_linearity(ctx: Context) -> Result:
    """backward is linear in dout (catches a backward that ignores, squares or clips dout)."""
    b = ctx.base
    assert b is not None and ctx.dout is not None
    if not _all_finite(ctx):
        return NOT_APPLICABLE
    alpha, beta = LINEAR_COMBINATION
    (dx2, g2), (dxc, gc) = _call_sequence(ctx)["linearity"]
    pairs = []
    if b.dx is not None and dx2 is not None and dxc is not None:
        pairs.append(("dx", "x", b.dx, dx2, dxc))
    pairs += [(f"grads[{k!r}]", k, b.grads[k], g2[k], gc[k]) for k in b.grads if k in g2 and k in gc and k in ctx.params]
    for name, of, g1, gb, gcomb in pairs:
        if not (g1.shape == gb.shape == gcomb.shape):
            continue
        expect = alpha * np.asarray(g1, dtype=np.float64) + beta * np.asarray(gb, dtype=np.float64)
        ok, diff, tol = _close(ctx, gcomb, expect, scale=abs(alpha) * _max_abs(g1) + abs(beta) * _max_abs(gb),
                               grad_of=of, weight=abs(alpha) + abs(beta))
        if not ok:
            return Finding("backward-linearity", f"{name} of backward({alpha}*d1 + {beta}*d2) != {alpha}*{name}(d1) + "
                           f"{beta}*{name}(d2)", name.split("'")[1] if "'" in name else name,
                           [f"max difference {diff:.3g} (tolerance {tol:.2g})",
                            "backward must be linear in dout: does it ignore dout, or use dout**2, |dout|, a clip?"],
                           {"max_abs": diff})
    return None


#: the combination alpha * dout + beta * d2 backward-linearity checks
LINEAR_COMBINATION = (1.7, -0.6)


def _call_sequence(ctx: Context) -> dict[str, Any]:
    """One sequence of calls that determinism, backward-linearity, backward-repeatable and
    no-aliasing all read: forward, backward, backward again, forward and backward on other
    values, forward on the example again and backward on dout, on another d2 and on
    alpha * dout + beta * d2."""
    if "sequence" not in ctx.memo:
        assert ctx.dout is not None
        out = ctx.forward_raw(ctx.x.copy(), {k: v.copy() for k, v in ctx.params.items()})
        out_keep = out.copy()
        dx_raw, grads = ctx.backward_raw(ctx.dout.copy())
        dx1 = None if dx_raw is None else dx_raw.copy()
        g1 = {k: np.asarray(v).copy() for k, v in grads.items()}
        dx2, g2 = ctx.backward(ctx.dout)
        ctx.forward(_other_input(ctx))
        ctx.backward((-ctx.dout).astype(ctx.dtype))
        # read now: a buffer the next forward on x refills with the same values would hide
        aliased = [name for name, obj, keep in (("out", out, out_keep), ("dx", dx_raw, dx1))
                   if obj is not None and keep is not None
                   and (obj.shape != keep.shape or not same_values(obj, keep))]
        ctx.forward(ctx.x)
        dx3, g3 = ctx.backward(ctx.dout)
        d2 = unit_noise(np.random.default_rng([ctx.example.seed, 0xD2]), ctx.dout.shape).astype(ctx.dtype)
        alpha, beta = LINEAR_COMBINATION
        second = ctx.backward(d2)
        combined = ctx.backward((alpha * ctx.dout + beta * d2).astype(ctx.dtype))
        ctx.memo["sequence"] = {
            "again": out_keep,
            "linearity": (second, combined),
            "aliased": aliased,
            "runs": [("a second forward + backward", dx1, g1), ("a second backward after the same forward", dx2, g2),
                     ("forward on other values, then forward and backward again", dx3, g3)],
        }
    return ctx.memo["sequence"]


@check("backward-repeatable")
def backward_repeatable(ctx: Context) -> Result:
    """the same forward and dout twice give the same dx and grads (no accumulation across calls)."""
    b = ctx.base
    assert b is not None and ctx.dout is not None
    for when, dx, g in _call_sequence(ctx)["runs"]:
        pairs = [("dx", "x", b.dx, dx)] if (b.dx is not None and dx is not None) else []
        pairs += [(f"grads[{k!r}]", k, b.grads[k], g[k]) for k in b.grads if k in g and k in ctx.params]
        for name, of, first, again in pairs:
            ok, diff, tol = _close(ctx, again, first, grad_of=of)
            if not ok:
                ratio = _ratio(np.asarray(again, dtype=np.float64), np.asarray(first, dtype=np.float64))
                hint = "Gradients accumulate (+=) instead of being set, or backward changes state it reads."
                stale = when.startswith("forward on other values")
                if stale:
                    hint = "backward reads state that an earlier forward left (a cache kept across calls)."
                return Finding("backward-repeatable", f"{name} after {when} differs from the first"
                               + (f" ({ratio.split()[0]}x)" if ratio else ""),
                               name.split("'")[1] if "'" in name else name,
                               [f"max difference {diff:.3g} (tolerance {tol:.2g})", hint],
                               {"max_abs": diff, "ratio": ratio, "stale": stale})
    return None


def _other_input(ctx: Context) -> np.ndarray:
    """Different valid values of x's shape (indices permuted, floats shifted)."""
    if ctx.spec.index_input is None:
        return (ctx.x + 0.5).astype(ctx.x.dtype)
    return ctx.x[::-1].copy() if ctx.x.ndim else ctx.x.copy()


@check("no-mutation")
def no_mutation(ctx: Context) -> Result:
    """forward and backward leave x, dout and the params unchanged."""
    if not ctx.mutations:
        return None
    m = ctx.mutations[0]
    fix = {"dout": "copy before writing (dout = dout.copy()) or build a new array",
           "x": "keep x read-only: compute into a new array"}.get(m.array, "params are read-only in forward and backward")
    lines = [f"largest change {m.max_change:.3g} at index {m.index}; {fix}"]
    lines += [f"Also: {o.call} wrote into {o.array}" for o in ctx.mutations[1:]]
    return Finding("no-mutation", f"{m.call} wrote into {m.array} in place", m.array, lines,
                   {"call": m.call, "array": m.array, "max_change": m.max_change})


@check("no-aliasing")
def no_aliasing(ctx: Context) -> Result:
    """an array the layer returned is not overwritten by a later call (no reused output buffers)."""
    aliased = _call_sequence(ctx)["aliased"]
    if aliased:
        name = aliased[0]
        return Finding("no-aliasing", f"the {name} array returned earlier was overwritten by a later call", name,
                       ["The layer hands out an internal buffer: return a new array (or a copy)."])
    return None


@check("params-live", applies=lambda spec: True)
def params_live(ctx: Context) -> Result:
    """forward reads params at call time: a replaced or in-place edited param takes effect."""
    b = ctx.base
    assert b is not None
    # a param whose gradient is round-off (it does not affect out) cannot show staleness
    names = [k for k in ctx.params if ctx.params[k].size and _grad_ok(ctx, k)
             and _max_abs(b.grads[k]) > np.sqrt(ctx.prec.eps) * ctx.natural(k)]
    if not names or not _all_finite(ctx):
        return NOT_APPLICABLE
    # one param per example (three forwards each); the examples take turns over all of them
    for k in [names[int(ctx.rng.integers(len(names)))]]:
        p = ctx.params[k]
        new = (p + unit_noise(ctx.rng, p.shape) * max(float(np.sqrt(np.mean(np.asarray(p, dtype=np.float64) ** 2))), 1.0) * 0.5).astype(ctx.dtype)
        replaced = dict(ctx.params)
        replaced[k] = new.copy()
        out_r = ctx.forward(ctx.x, replaced)
        live = p.copy()
        params = dict(ctx.params)
        params[k] = live
        ctx.forward_raw(ctx.x.copy(), params)
        live[...] = new
        out_i = ctx.forward_raw(ctx.x.copy(), params).copy()
        ctx.set_params(None)
        same_as_old = _close(ctx, out_r, b.out, output=True)[0]
        if same_as_old:
            return Finding("params-live", f"forward ignored a replaced params[{k!r}]: the output is unchanged",
                           k, ["forward must read layer.params at call time; a copy or a derived array (W.T) "
                               "cached at construction or on the first call goes stale when training updates it."])
        ok, diff, _ = _close(ctx, out_i, out_r, output=True)
        if not ok:
            return Finding("params-live", f"forward ignored an in-place update of params[{k!r}]", k,
                           [f"out after params[{k!r}][...] = new differs from out after params[{k!r}] = new by {diff:.3g}",
                            "A cached derived array (W.T, a reshaped copy) goes stale when an optimizer updates in place."])
    return None


@check("determinism")
def determinism(ctx: Context) -> Result:
    """forward on the same x and params twice gives the same output."""
    b = ctx.base
    assert b is not None
    out2 = _call_sequence(ctx)["again"]
    # the harness restores numpy's global random state after each call, which hides the
    # randomness from the comparison below; drawing from it is the bug itself
    used = sorted(ctx.counter.global_rng & {"forward", "backward"})
    if used:
        return Finding("determinism", f"{' and '.join(used)} draw from numpy's global random state (np.random.*): "
                       "the output changes from call to call", "out",
                       ["Draw masks and noise from a Generator made from the factory's rng, fixed per layer."],
                       {"calls": used})
    ok, diff, tol = _close(ctx, out2, b.out, output=True)
    if not ok:
        return Finding("determinism", "a second forward on the same x and params gives a different output", "out",
                       [f"max difference {diff:.3g} (tolerance {tol:.2g})",
                        "Randomness (a dropout mask from np.random) must come from the factory's rng, fixed per layer."],
                       {"max_abs": diff})
    return None


@check("forward-reference", applies=lambda spec: spec.reference is not None)
def forward_reference(ctx: Context) -> Result:
    """forward computes what the declared reference implementation does (a known-value oracle)"""
    b = ctx.base
    assert b is not None
    ctx.set_params(None)
    try:
        expected = np.asarray(ctx.spec.reference(ctx.layer, ctx.x.copy()), dtype=np.float64)  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - the user's reference, reported
        return Finding("forward-reference", f"the reference raised {type(exc).__name__}: {exc}", "out",
                       ["reference(layer, x) must compute out from x and the layer's params and state"])
    if expected.shape != b.out.shape:
        return Finding("forward-reference", f"out has shape {b.out.shape}, the reference gives {expected.shape}", "out")
    ok, diff, tol = _close(ctx, b.out, expected, output=True)
    if not ok:
        worst = np.unravel_index(int(np.argmax(np.abs(np.asarray(b.out, dtype=np.float64) - expected))),
                                 b.out.shape) if b.out.ndim else ()
        return Finding("forward-reference", "out differs from the reference implementation: the forward computes "
                       "another function (whose backward may well be its exact derivative)", "out",
                       [f"max difference {diff:.3g} at {tuple(int(i) for i in worst)} (tolerance {tol:.2g})",
                        "Gradient checks compare backward with forward; only a reference can say forward is right."],
                       {"max_abs": diff})
    return None


CHECK_ORDER = ("protocol", "forward-shape", "backward-shape", "dtype", "finite", "grad-input", "grad-params",
               "bias", "param-grad-additivity", "batch-independence", "elementwise", "backward-linearity",
               "backward-repeatable", "no-mutation", "no-aliasing", "params-live", "determinism", "forward-reference")
assert set(CHECK_ORDER) == set(REGISTRY), "every check has a place in the report's order"


def applicable(spec: LayerSpec) -> list[Check]:
    """The checks that apply to a spec, in report order, after `checks=` and `skip=`."""
    chosen = spec.checks if spec.checks is not None else CHECK_ORDER
    return [REGISTRY[n] for n in CHECK_ORDER if n in chosen and n not in spec.skip and REGISTRY[n].applies(spec)]
