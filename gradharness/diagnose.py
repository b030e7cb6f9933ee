"""Diagnosis: from the evidence of a shrunk failing example, the bug it most likely is, in words.

Each rule is a small function that reads a Finding (and may run the layer a few more
times through its Context) and returns a Diagnosis or None; the first rule that
explains the evidence wins. A rule claims a diagnosis only when it explains nearly
all of the mismatch (`EXPLAINED`), so a merely noisy comparison is never given a
confident story: it gets the `unexplained` summary with the numbers instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ._context import Context
from ._report import Finding, fmt

#: a hypothesis explains a mismatch when what is left is at most this share of it
EXPLAINED = 1e-3
#: a gradient is "zero" when it is at most this share of the other side
ZERO_SHARE = 1e-10
#: largest out x in Jacobian built to recognize a diagonal-only backward
JACOBIAN_MAX = 4096
#: share of the wrong elements that must lie on the border (or the stride lattice) to say so
PATTERN_SHARE = 0.95


@dataclass(frozen=True)
class Diagnosis:
    """The most likely bug: a stable code, the text a person reads and the numbers behind it."""

    code: str
    text: str
    params: Mapping[str, Any] = field(default_factory=dict)
    confidence: str = "high"   # "high": explains the evidence; "low": a summary of it


Rule = Callable[[Context, Finding], "Diagnosis | None"]
RULES: dict[str, list[Rule]] = {}

#: every diagnosis code and what it means (the stable, machine-readable vocabulary)
CODES: dict[str, str] = {
    "zero-analytic": "the analytic gradient is zero where the numerical one is not: a path is not back-propagated",
    "zero-numeric": "the numerical gradient is zero: the tensor does not affect the output",
    "sign-flip": "analytic = -numeric",
    "scaled-by-batch": "analytic = n * numeric: summed where the forward averages over the batch",
    "scaled-by-inverse-batch": "analytic = numeric / n: averaged where the forward sums over the batch",
    "scaled-by-2": "analytic = 2 * numeric: a factor 2 counted twice",
    "scaled-by-half": "analytic = numeric / 2: the 2 of d(x^2)/dx dropped",
    "scaled": "analytic = c * numeric for another constant c",
    "transposed": "analytic = numeric.T",
    "first-sample-only": "only the first sample's contribution (dout[0])",
    "wrong-axis": "dout summed over the wrong axis",
    "keepdims": "a shape that differs only by size-1 axes (keepdims)",
    "transposed-shape": "a shape with the right sizes in another order",
    "diagonal-only": "only the diagonal of a full Jacobian (an element-wise approximation of a matrix derivative)",
    "square-only": "right only when dims coincide: `*` where `@` was meant, or a missing transpose",
    "border": "wrong on the borders only, or only with padding: padding handling",
    "strided": "wrong only with a stride > 1: stride handling",
    "overlapping-windows": "wrong only where pooling windows overlap: lost accumulation",
    "hyper-dependent": "wrong with one value of a hyper-parameter, right with another",
    "repeated-index": "wrong on repeated indices only: lost accumulation",
    "truncated-bptt": "right at the last time step only: backprop through time truncated",
    "mutated-input": "forward or backward writes into x",
    "mutated-dout": "backward writes into dout",
    "mutated-params": "forward or backward writes into a param",
    "accumulates": "gradients accumulate across calls (+= instead of =)",
    "stale-state": "backward uses state from an earlier forward",
    "blame": "in a network: the first layer whose own backward is wrong",
    "unexplained": "none of the above: the relative error, where it is largest, and how it changes with the step",
}


def rule(*checks: str) -> Callable[[Rule], Rule]:
    """Register a rule for failures of these checks (tried in registration order)."""

    def deco(fn: Rule) -> Rule:
        for c in checks:
            RULES.setdefault(c, []).append(fn)
        return fn

    return deco


def diagnose(ctx: Context, finding: Finding, *, widen: bool = True) -> Diagnosis | None:
    """The first rule that explains the finding; for gradient failures, a summary at least.

    Shrinking often ends on a tensor of one element, where a sign flip, a factor 2 and a
    transposition look alike; then the same check is run on the smallest example whose dims
    are pairwise distinct (same seed) and, if it fails there too, diagnosed on that one.
    """
    if widen and finding.check in ("grad-input", "grad-params") and finding.data.get("value") is not None \
            and finding.data["value"].size < 2:
        wide = _diagnose_wider(ctx, finding)
        if wide is not None:
            return wide
    for fn in RULES.get(finding.check, []):
        try:
            d = fn(ctx, finding)
        except Exception:  # noqa: BLE001 - a rule that cannot read this evidence says nothing
            d = None
        if d is not None:
            # with a batch of 2, "divided by n" and "divided by 2" look the same: ask a wider example
            if widen and d.params.get("n") == 2 and d.code in ("scaled-by-batch", "scaled-by-inverse-batch",
                                                                "scaled-by-2", "scaled-by-half"):
                return _diagnose_wider(ctx, finding) or d
            return d
    return None


def _diagnose_wider(ctx: Context, finding: Finding) -> Diagnosis | None:
    from ._context import Counter
    from ._core import check_findings
    from ._strategies import Example, guaranteed_examples

    # dims from 3 up where they fit, so a factor n, 2 and d cannot coincide
    wider = [e for floor in (3, 2) for e in guaranteed_examples(ctx.spec, ctx.example.seed, floor=floor)
             if len(set(e.dims.values())) == len(e.dims) and min(e.dims.values(), default=0) >= floor]
    if not wider:
        return None
    ex = Example(dims=wider[0].dims, hyper=ctx.example.hyper or wider[0].hyper, seed=ctx.example.seed,
                 values=ctx.example.values)
    for f, other in check_findings(ctx.spec, ex, finding.check, ctx.dtype, Counter()):
        if f.tensor == finding.tensor:
            d = diagnose(other, f, widen=False)
            if d is not None and d.code != "unexplained":
                dims = ", ".join(f"{k}={v}" for k, v in ex.dims.items())
                return Diagnosis(d.code, f"{d.text} (seen on the wider example {dims})", {**d.params, "dims": ex.dims},
                                 d.confidence)
    return None


# ----- helpers ------------------------------------------------------------------------
def _arrays(finding: Finding) -> tuple[np.ndarray, np.ndarray] | None:
    """(analytic, numeric) of the whole failing tensor, when it was localized in full."""
    loc = finding.data.get("localized")
    if loc is None or not loc.full:
        return None
    shape = finding.data["value"].shape
    return loc.analytic.reshape(shape), loc.numeric.reshape(shape)


def _norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(a.reshape(-1)))


def _explains(candidate: np.ndarray, analytic: np.ndarray, numeric: np.ndarray) -> bool:
    """Whether `candidate` (a prediction of the analytic gradient) leaves almost none of the mismatch."""
    if candidate.shape != analytic.shape:
        return False
    mismatch = _norm(analytic - numeric)
    return mismatch > 0 and _norm(analytic - candidate) <= EXPLAINED * mismatch


def _label(finding: Finding) -> str:
    return "dx" if finding.tensor == "x" else f"grads[{finding.tensor!r}]"


def _batch(ctx: Context) -> int | None:
    if ctx.spec.batch_axis is None or ctx.x.ndim == 0:
        return None
    return int(ctx.x.shape[0])


# ----- gradient mismatches -------------------------------------------------------------
def explain_arrays(a: np.ndarray, n: np.ndarray, label: str, what: str, batch: int | None,
                   sizes: Mapping[str, Any]) -> Diagnosis | None:
    """Diagnose an analytic gradient `a` against the numeric one `n` from the two arrays alone."""
    ma, mn = float(np.max(np.abs(a))), float(np.max(np.abs(n)))
    if ma <= ZERO_SHARE * mn:
        return Diagnosis("zero-analytic", f"{label} is zero where the numerical derivative is not (max |numeric| = "
                         f"{mn:.3g}): this path is not back-propagated", {"max_numeric": mn})
    if mn <= ZERO_SHARE * ma:
        return Diagnosis("zero-numeric", f"the numerical derivative is zero but {label} is not (max |analytic| = "
                         f"{ma:.3g}): {what} does not affect the output; is it used in forward?", {"max_analytic": ma})
    nn = float(np.sum(n * n))
    c = float(np.sum(a * n)) / nn if nn else 0.0
    # one number is always "a constant times" another: a factor needs two elements to mean anything
    if nn and np.count_nonzero(n) >= 2 and _explains(c * n, a, n):
        params: dict[str, Any] = {"factor": c}
        if abs(c + 1) <= 1e-6:
            return Diagnosis("sign-flip", f"sign flip: {label} = -numeric everywhere", params)
        known = [("scaled-by-2", 2.0, "twice the derivative: a factor 2 counted twice (d(x^2)/dx = 2x, then 2 again?)"),
                 ("scaled-by-half", 0.5, "half the derivative: the 2 of d(x^2)/dx = 2x dropped")]
        if batch and batch > 1:
            known = [("scaled-by-batch", float(batch), f"n = {batch} times the derivative: summed over the batch "
                      "where the forward averages (a missing / n)"),
                     ("scaled-by-inverse-batch", 1.0 / batch, f"the derivative divided by n = {batch}: averaged over "
                      "the batch where the forward sums (an extra / n)")] + known
        for code, value, words in known:
            if abs(c - value) <= 1e-6 * abs(value):
                return Diagnosis(code, f"{label} is {fmt(c).strip()} x numeric: {words}", {**params, "n": batch})
        for name, size in sizes.items():
            if isinstance(size, int) and size > 1 and abs(c - size) <= 1e-6 * size:
                return Diagnosis("scaled", f"{label} is {size} x numeric ({name} = {size}): summed over {name} "
                                 "where the forward averages?", {**params, "dim": name})
            if isinstance(size, int) and size > 1 and abs(c - 1 / size) <= 1e-6 / size:
                return Diagnosis("scaled", f"{label} is numeric / {size} ({name} = {size}): averaged over {name} "
                                 "where the forward sums?", {**params, "dim": name})
        return Diagnosis("scaled", f"{label} is {fmt(c).strip()} x numeric everywhere: a constant factor is wrong",
                         params)
    if a.ndim == 2 and a.shape[0] == a.shape[1] >= 2 and _explains(n.T, a, n):
        return Diagnosis("transposed", f"{label} is the transpose of the numerical derivative: a .T too many or "
                         "too few (only square shapes let this through)")
    return None


@rule("grad-input", "grad-params")
def _blame(ctx: Context, f: Finding) -> Diagnosis | None:
    children = getattr(ctx.layer, "layers", None)
    if not isinstance(children, (list, tuple)) or not children:
        return None
    try:
        return _blame_chain(ctx, list(children))
    finally:
        ctx.set_params(None)


def _blame_chain(ctx: Context, children: list[Any]) -> Diagnosis | None:
    """Walk the chain with the activations the network feeds each layer; blame the first whose own
    backward disagrees with its own numerical derivative, with that layer's own diagnosis."""
    from ._numeric import localize, probe_tensor

    ctx.set_params(ctx.params_ref)
    act = ctx.x_ref
    acts = []
    for child in children:
        acts.append(act)
        act = np.asarray(child.forward(act)).astype(np.float64)
    rng = np.random.default_rng(ctx.example.seed)
    for i, (child, xin) in enumerate(zip(children, acts)):
        out = np.asarray(child.forward(xin)).astype(np.float64)
        dout = rng.standard_normal(out.shape)
        dx = child.backward(dout)
        grads = {k: np.asarray(v, dtype=np.float64) for k, v in getattr(child, "grads", {}).items()}
        params = {k: np.array(v, dtype=np.float64) for k, v in child.params.items()}

        def loss(name: str, value: np.ndarray) -> float:
            if name == "x":
                o = child.forward(value)
            else:
                old = child.params[name]
                child.params[name] = value
                try:
                    o = child.forward(xin)
                finally:
                    child.params[name] = old
            return float(np.sum(np.asarray(o, dtype=np.float64) * dout))

        phi0 = float(np.sum(out * dout))
        terms = out.size + xin.size + sum(p.size for p in params.values())
        noise = ctx.ref.eps * ctx.ref.growth(terms) * (float(np.sum(np.abs(out * dout))) + abs(phi0))
        for name, value, grad in [("x", xin, dx)] + [(k, params[k], grads.get(k)) for k in params]:
            if grad is None or np.shape(grad) != np.shape(value):
                continue
            fn = (lambda nm: (lambda z: loss(nm, z)))(name)
            g = np.asarray(grad, dtype=np.float64)
            if not probe_tensor(fn, phi0, value, g, noise=noise, analytic_prec=ctx.ref, terms=terms, rng=rng).failed:
                continue
            what = "dx" if name == "x" else f"grads[{name!r}]"
            kind = type(child).__name__
            own = None
            loc = localize(fn, phi0, value, g, noise=noise, analytic_prec=ctx.ref, terms=terms, rng=rng)
            if loc.full:
                own = explain_arrays(loc.analytic.reshape(value.shape), loc.numeric.reshape(value.shape), what,
                                     "x" if name == "x" else f"params[{name!r}]", int(xin.shape[0]) if xin.ndim else None,
                                     ctx.sizes)
            tail = f"; there: {own.text}" if own is not None else ""
            return Diagnosis("blame", f"layer {i} ({kind}) of the network has the wrong backward: its {what} does "
                             f"not match its own numerical derivative given the activations the network fed it{tail}",
                             {"index": i, "layer": kind, "tensor": name,
                              "own": None if own is None else own.code})
    return None


@rule("grad-input", "grad-params")
def _arrays_rule(ctx: Context, f: Finding) -> Diagnosis | None:
    arr = _arrays(f)
    if arr is None:
        return None
    what = "x" if f.tensor == "x" else f"params[{f.tensor!r}]"
    return explain_arrays(arr[0], arr[1], _label(f), what, _batch(ctx), ctx.sizes)


def _bias_candidates(ctx: Context, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """What a buggy bias gradient is typically made of: dout[0] for the batch sum, or the wrong axis."""
    d = ctx.dout_ref
    out: dict[str, np.ndarray] = {}
    if d.ndim == 2 and shape == (d.shape[1],):
        out["first-sample-only"] = d[0]
        if d.shape[0] == d.shape[1]:
            out["wrong-axis"] = d.sum(axis=1)
    elif d.ndim == 4 and shape == (d.shape[1],):
        out["first-sample-only"] = d[0].sum(axis=(1, 2))
        out["wrong-axis"] = d.sum(axis=(0, 1, 2))[: shape[0]] if d.shape[3] == shape[0] else None  # type: ignore[assignment]
    return {k: v for k, v in out.items() if v is not None}


@rule("grad-params", "bias", "param-grad-additivity")
def _bias_patterns(ctx: Context, f: Finding) -> Diagnosis | None:
    if f.tensor is None or f.tensor not in ctx.params or ctx.base is None:
        return None
    g = ctx.base.grads.get(f.tensor)
    if g is None:
        return None
    a = g.astype(np.float64)
    words = {"first-sample-only": "only the first sample's contribution: dout[0] where a bias broadcast over the "
                                  "batch sums dout over it",
             "wrong-axis": "dout summed over the wrong axis"}
    for code, cand in _bias_candidates(ctx, a.shape).items():
        if cand.shape == a.shape and np.allclose(a, cand, rtol=1e-9, atol=1e-12 * max(float(np.max(np.abs(cand))), 1e-300)):
            return Diagnosis(code, f"{_label(f)} is {words[code]}")
    return None


@rule("grad-input")
def _diagonal_only(ctx: Context, f: Finding) -> Diagnosis | None:
    b = ctx.base
    if b is None or b.out.shape != ctx.x.shape or ctx.x.size * b.out.size > JACOBIAN_MAX or ctx.x.size < 2:
        return None
    x = ctx.x_ref
    n_out = b.out.size
    t = 1e-5 * max(float(np.sqrt(np.mean(x**2))), 1.0)
    jac_num = np.zeros((n_out, x.size))
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = t
        plus = ctx.forward(x + e.reshape(x.shape), ctx.params_ref).astype(np.float64).reshape(-1)
        minus = ctx.forward(x - e.reshape(x.shape), ctx.params_ref).astype(np.float64).reshape(-1)
        jac_num[:, j] = (plus - minus) / (2 * t)
    ctx.forward(ctx.x)
    jac_an = np.zeros_like(jac_num)
    for i in range(n_out):
        d = np.zeros(n_out)
        d[i] = 1.0
        dx, _ = ctx.backward(d.reshape(b.out.shape).astype(ctx.dtype))
        if dx is None:
            return None
        jac_an[i] = dx.astype(np.float64).reshape(-1)
    diag = np.eye(n_out, dtype=bool)
    off_num = float(np.max(np.abs(np.where(diag, 0, jac_num))))
    off_an = float(np.max(np.abs(np.where(diag, 0, jac_an))))
    scale = float(np.max(np.abs(jac_num)))
    if off_num > 1e-6 * scale and off_an <= ZERO_SHARE * max(scale, 1e-300):
        close_diag = np.allclose(np.diag(jac_an), np.diag(jac_num), rtol=1e-4, atol=1e-6 * scale)
        words = "and equals the true diagonal" if close_diag else "and differs from the true diagonal too"
        return Diagnosis("diagonal-only", "backward applies a diagonal Jacobian (" + words + ") where the true one "
                         f"is full (largest off-diagonal entry {off_num:.3g}): an element-wise derivative such as "
                         "s * (1 - s) for a softmax, which needs s * (dout - sum(dout * s))",
                         {"max_off_diagonal": off_num, "diagonal_matches": bool(close_diag)})
    return None


def _bad_mask(f: Finding) -> np.ndarray | None:
    loc = f.data.get("localized")
    if loc is None or not loc.full:
        return None
    return loc.bad.reshape(f.data["value"].shape)


@rule("grad-input", "grad-params")
def _spatial_patterns(ctx: Context, f: Finding) -> Diagnosis | None:
    bad = _bad_mask(f)
    if bad is None or bad.ndim != 4 or f.tensor != "x" or not bad.any():
        return None
    h, w = bad.shape[2:]
    pad = int(ctx.sizes.get("pad", ctx.sizes.get("padding", 1)) or 1)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    border = (rows < pad) | (rows >= h - pad) | (cols < pad) | (cols >= w - pad)
    border = np.broadcast_to(border, bad.shape)
    k = int(bad.sum())
    if not border.all() and bad[border].sum() >= PATTERN_SHARE * k:
        return Diagnosis("border", f"the wrong elements of dx ({k}) are on the border ({pad} wide): padding is "
                         "handled wrong (cropped at the wrong offset, or padded values given gradient)",
                         {"wrong": k, "pad": pad})
    stride = int(ctx.sizes.get("stride", 1) or 1)
    if stride > 1:
        lattice = np.broadcast_to((rows % stride == 0) & (cols % stride == 0), bad.shape)
        on, off = int(bad[lattice].sum()), int(bad[~lattice].sum())
        if on + off and max(on, off) >= PATTERN_SHARE * k and not lattice.all():
            where = "on" if on >= off else "off"
            return Diagnosis("strided", f"the wrong elements of dx lie {where} the stride-{stride} lattice: "
                             "the stride is ignored or misapplied in backward", {"stride": stride, "wrong": k})
    return None


@rule("grad-input", "grad-params")
def _hyper_sensitivity(ctx: Context, f: Finding) -> Diagnosis | None:
    """Wrong with one value of a hyper-parameter, right with another: stride, padding, overlap."""
    from ._context import Counter
    from ._core import run_example
    from ._spec import DimRange
    from ._strategies import Example, _satisfies, _with_derived

    here = dict(ctx.example.hyper)
    for name, src in ctx.spec.hyper.items():
        values = list(src.values()) if isinstance(src, DimRange) else list(src) if isinstance(src, tuple) else []
        for v in values:
            if v == here.get(name):
                continue
            hyper = {**here, name: v}
            sizes = _with_derived(ctx.spec, {**ctx.example.dims, **hyper})
            if not all(int(sizes[k]) >= 1 for k in ctx.spec.derived) or not _satisfies(ctx.spec, sizes):
                continue
            ex = Example(dims=ctx.example.dims, hyper=hyper, seed=ctx.example.seed, values=ctx.example.values)
            if any(x.check == f.check for x in run_example(ctx.spec, ex, {f.check}, Counter(), None)):
                continue
            k, st = here.get("k"), here.get("stride")
            if isinstance(k, int) and isinstance(st, int) and k > st and name in ("k", "stride") \
                    and hyper.get("k", k) <= hyper.get("stride", st):
                return Diagnosis("overlapping-windows", f"wrong with overlapping windows (k={k}, stride={st}) and "
                                 f"right with {name}={v}: where windows overlap, an input gets gradient from several "
                                 "of them, and an assignment (dx[idx] = ..., or a fancy-index +=) keeps one",
                                 {"k": k, "stride": st})
            code = "strided" if "stride" in name else "border" if "pad" in name else "hyper-dependent"
            return Diagnosis(code, f"wrong with {name}={here.get(name)} and right with {name}={v} on the same "
                             f"example: the {name} is ignored or misapplied in backward",
                             {"name": name, "wrong": here.get(name), "right": v})
    return None


@rule("grad-params")
def _repeated_index(ctx: Context, f: Finding) -> Diagnosis | None:
    if ctx.spec.index_input is None or f.tensor is None:
        return None
    bad = _bad_mask(f)
    if bad is None or bad.ndim < 1 or not bad.any():
        return None
    idx, counts = np.unique(ctx.x.reshape(-1), return_counts=True)
    repeated = set(int(i) for i, c in zip(idx, counts) if c > 1)
    bad_rows = set(int(r) for r in np.argwhere(bad.reshape(bad.shape[0], -1).any(axis=1)).reshape(-1))
    if repeated and bad_rows and bad_rows <= repeated:
        return Diagnosis("repeated-index", f"only rows of {_label(f)} whose index repeats in x are wrong "
                         f"({sorted(bad_rows)}): a fancy-index update W[idx] += g keeps one contribution per index; "
                         "np.add.at(dW, idx, g) accumulates them", {"rows": sorted(bad_rows)})
    return None


@rule("grad-input")
def _truncated_bptt(ctx: Context, f: Finding) -> Diagnosis | None:
    if len(ctx.spec.input) != 3 or f.tensor != "x":
        return None
    bad = _bad_mask(f)
    if bad is None or bad.shape[1] < 2 or not bad.any():
        return None
    per_step = bad.any(axis=(0, 2))
    if not per_step[-1] and per_step[:-1].any():
        steps = [int(s) for s in np.argwhere(per_step).reshape(-1)]
        return Diagnosis("truncated-bptt", f"dx is right at the last time step and wrong at steps {steps}: the "
                         "gradient from later steps does not flow back (backprop through time truncated)",
                         {"wrong_steps": steps})
    return None


@rule("grad-input", "grad-params")
def _square_only(ctx: Context, f: Finding) -> Diagnosis | None:
    from ._core import run_example
    from ._spec import DimRange
    from ._strategies import Example

    dims = dict(ctx.example.dims)
    ranges = {k: v for k, v in ctx.spec.dims.items() if isinstance(v, DimRange)}
    # with hyper-parameters or derived dims, equal sizes change the structure (a window that
    # covers everything, one output position): "passes when square" would mean nothing there
    if ctx.spec.hyper or ctx.spec.derived:
        return None
    if len(ranges) < 2 or len(set(dims[k] for k in ranges)) < len(ranges):
        return None
    from ._context import Counter

    # every dim as large as the largest failing one, then all 1 (where `*` and `@` coincide)
    top = max(dims[k] for k in ranges)
    fits = [v for v in (top, 1) if all(r.lo <= v <= r.hi for r in ranges.values())]
    for v in fits:
        square = Example(dims={**dims, **{k: v for k in ranges}}, hyper=ctx.example.hyper,
                         seed=ctx.example.seed, values=ctx.example.values)
        again = run_example(ctx.spec, square, {f.check}, Counter(), None)
        if not any(x.check == f.check for x in again):
            return Diagnosis("square-only", f"the same example passes when every dim is {v} and fails with "
                             f"distinct dims {dims}: `*` where `@` was meant, a missing transpose or a broadcast "
                             "that only lines up for equal sizes", {"square": v})
    return None


@rule("grad-input", "grad-params")
def _unexplained(ctx: Context, f: Finding) -> Diagnosis | None:
    """The numbers: relative error, where it is largest, and how the mismatch moves with the step."""
    loc = f.data.get("localized")
    label = _label(f)
    if loc is None:
        return None
    diff = np.abs(loc.analytic - loc.numeric)
    if not diff.size:
        return None
    i = int(np.argmax(diff))
    idx = tuple(int(j) for j in loc.indices[i])
    rel = float(diff[i] / max(abs(loc.numeric[i]), abs(loc.analytic[i]), 1e-300))
    # a wrong gradient stays put as the step changes; round-off or truncation would move
    value = f.data["value"]
    flat = int(np.ravel_multi_index(idx, value.shape)) if value.ndim else 0
    e = np.zeros(value.size)
    e[flat] = 1.0
    e = e.reshape(value.shape)
    steps = []
    for scale in (1e-3, 1e-5):
        t = scale * max(abs(float(value.reshape(-1)[flat])), 1.0)
        plus, minus = ctx.loss_ref(f.tensor or "x", value + t * e), ctx.loss_ref(f.tensor or "x", value - t * e)
        steps.append(abs(float(loc.analytic[i]) - (plus - minus) / (2 * t)))
    flat_err = steps[1] > 0.5 * steps[0]
    behaviour = ("the same at steps 1e-3 and 1e-5: a wrong gradient, not numerical noise" if flat_err else
                 "shrinking with the step: truncation, so the analytic value may be right and the function very curved")
    return Diagnosis("unexplained", f"{label} is off by up to {rel:.3g} (relative), largest at index {idx}; the gap is "
                     f"{behaviour}", {"max_rel": rel, "index": list(idx), "gap_by_step": steps},
                     confidence="high" if flat_err else "low")


# ----- shapes and behaviour ----------------------------------------------------------------
@rule("backward-shape", "forward-shape")
def _shape(ctx: Context, f: Finding) -> Diagnosis | None:
    got, want = f.evidence.get("shape"), f.evidence.get("expected")
    if got is None or want is None:
        return None
    got, want = tuple(got), tuple(want)
    what = f.tensor or "out"
    if tuple(d for d in got if d != 1) == tuple(d for d in want if d != 1):
        return Diagnosis("keepdims", f"{what} has shape {got} where {want} is due: a reduction with keepdims=True, "
                         "or a broadcast (1, d) kept", {"shape": list(got), "expected": list(want)})
    if sorted(got) == sorted(want):
        return Diagnosis("transposed-shape", f"{what} has the right sizes {got} in the wrong order ({want} is due): "
                         "a missing or extra transpose", {"shape": list(got), "expected": list(want)})
    return None


@rule("no-mutation")
def _mutation(ctx: Context, f: Finding) -> Diagnosis | None:
    array = f.evidence.get("array", "")
    call = f.evidence.get("call", "")
    if array == "dout":
        return Diagnosis("mutated-dout", "backward modifies dout in place (dout[mask] = 0, dout *= ...): the caller's "
                         "upstream gradient is corrupted", {"call": call})
    if array == "x":
        return Diagnosis("mutated-input", f"{call} modifies x in place: the caller's input is corrupted", {"call": call})
    return Diagnosis("mutated-params", f"{call} modifies {array} in place", {"call": call, "array": array})


@rule("backward-repeatable")
def _accumulates(ctx: Context, f: Finding) -> Diagnosis | None:
    ratio = f.evidence.get("ratio") or ""
    if f.evidence.get("stale"):
        return Diagnosis("stale-state", "backward uses state left by an earlier forward, not by the latest one")
    if ratio.startswith("2 ") or ratio.startswith("2.0"):
        return Diagnosis("accumulates", "the second backward gives exactly twice the first: gradients accumulate "
                         "(+=) instead of being set; assign them, or zero them at the start of backward",
                         {"ratio": 2.0})
    return Diagnosis("accumulates", "a repeated backward changes the gradients: state carried between calls "
                     "(accumulation or a cache updated in backward)")
