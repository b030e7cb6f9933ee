"""Running one example: build the layer, call it safely, keep the base trace every check reuses."""
from __future__ import annotations

import contextlib
import io
import signal
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ._errors import LayerCallError
from .adapters import missing_method_message
from ._spec import LayerSpec, resolve_shape
from ._strategies import Example, draw_dout, draw_input, redraw_param
from ._tolerance import JITTER_ULPS, REFERENCE, SAFETY, Precision, precision

@dataclass
class Counter:
    """Calls spent on the layer, and what the harness noticed about them."""

    forward: int = 0
    backward: int = 0
    build: int = 0
    #: note -> how often (or how many characters, for printing)
    notes: dict[str, int] = field(default_factory=dict)
    #: the calls ("factory", "forward", "backward") that drew from numpy's global random state
    global_rng: set[str] = field(default_factory=set)
    #: numpy's global random state when the innermost example_guard was entered (what a call
    #: that drew from it is restored to)
    rng_saved: Any = None
    #: an example_guard has the alarm handler installed
    alarm: bool = False

    def note(self, text: str, amount: int = 1) -> None:
        self.notes[text] = self.notes.get(text, 0) + amount


def shape_text(arr: Any) -> str:
    if isinstance(arr, np.ndarray):
        return f"{arr.dtype}{list(arr.shape)}"
    return type(arr).__name__


def _describe(x: Any, params: Mapping[str, Any]) -> str:
    parts = [f"x: {shape_text(x)}"] + [f"{k}: {shape_text(v)}" for k, v in params.items()]
    return ", ".join(parts)


class _CallTimeout(BaseException):
    """Raised by the alarm inside a layer call that ran past its time limit."""


_IGNORE_ALL = {"divide": "ignore", "over": "ignore", "under": "ignore", "invalid": "ignore"}


#: bytes of the block whose release raises malloc's reuse threshold (see warm_allocator)
ALLOCATOR_WARMUP = 8 << 20
_allocator_warmed = False


def warm_allocator() -> None:
    """Let malloc reuse freed blocks of up to ALLOCATOR_WARMUP bytes instead of handing them
    back to the system, once per process.

    An example allocates and frees many tensor-sized arrays: with glibc's starting thresholds
    (128 KiB) each of them is fresh memory, and zeroing its pages (thousands of page faults
    an example) took a third of an example's time on a 256 x 256 Linear. Freeing one block
    obtained by mmap raises glibc's threshold to that block's size (its documented dynamic
    threshold, mallopt(3)), as any numpy program that once frees a large temporary does; the
    block is never touched, so this costs two system calls. Elsewhere (macOS, musl) it does
    nothing.
    """
    global _allocator_warmed
    if not _allocator_warmed:
        _allocator_warmed = True
        block = np.empty(ALLOCATOR_WARMUP, dtype=np.uint8)
        del block


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal element for element, NaN equal to NaN (equal_nan costs thirty times a plain
    comparison on a large array: it runs only when a NaN may be why they differ)."""
    return bool(np.array_equal(a, b) or np.array_equal(a, b, equal_nan=True))


_RNG_VIEW: list[Any] = []  # [bit generator, a ctypes view of its state], made on first use


def global_rng_mark() -> Any:
    """A fingerprint of numpy's global random state that changes with every draw from it.

    np.random.get_state() copies all 624 words of the Mersenne Twister (45 us, more than a
    small layer's forward, and every call into the layer was to be watched). This reads in
    place the word position, which every draw moves, and two key words, which the refill
    every 624 draws rewrites; np.random.seed rewrites them too. Where that state is not an
    MT19937 the full state is compared.
    """
    try:
        bg = np.random.mtrand._rand._bit_generator
        if not _RNG_VIEW or _RNG_VIEW[0] is not bg:
            if type(bg).__name__ != "MT19937":
                raise TypeError(type(bg).__name__)
            import ctypes

            # mt19937_state: uint32 key[624]; int pos
            _RNG_VIEW[:] = [bg, (ctypes.c_uint32 * 625).from_address(bg.ctypes.state_address)]
        view = _RNG_VIEW[1]
        return (view[0], view[623], view[624])
    except Exception:  # noqa: BLE001 - any other numpy: the slow, exact comparison
        state = np.random.get_state()
        return (state[0], state[1].tobytes(), *state[2:])


@contextlib.contextmanager
def example_guard(counter: "Counter") -> Iterator[None]:
    """Around one example: the layer's printing silenced and its floating-point warnings ignored
    (NaN and inf are checked), numpy's error state and global random state restored afterwards
    and noted when the layer changed them, and the alarm behind per-call time limits installed."""
    err = np.geterr()
    rng_state = np.random.get_state()
    rng_mark = global_rng_mark()
    outer_saved, counter.rng_saved = counter.rng_saved, rng_state
    buf = io.StringIO()
    # never take over someone else's alarm (pytest-timeout, an outer harness)
    use_alarm = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
                 and signal.getitimer(signal.ITIMER_REAL)[0] == 0 and not counter.alarm)
    previous = None
    if use_alarm:
        def on_alarm(signum: int, frame: Any) -> None:
            raise _CallTimeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        counter.alarm = True
    try:
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.seterr(all="ignore")
            yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            counter.alarm = False
        if np.geterr() != {k: "ignore" for k in err}:
            counter.note("the layer changed numpy's error state (np.seterr): restored")
        np.seterr(**err)
        counter.rng_saved = outer_saved
        if global_rng_mark() != rng_mark:
            np.random.set_state(rng_state)
        printed = buf.getvalue()
        if printed:
            counter.note("the layer printed to stdout (silenced)", len(printed))


def call_layer(what: str, fn: Callable[[], Any], describe: Callable[[], str], counter: "Counter",
               timeout: float | None) -> Any:
    """Call into the user's layer under its time limit; any exception becomes its LayerCallError.

    A call that drew from numpy's global random state has it restored afterwards, so the
    harness compares like with like, and the draw is recorded (determinism reports it).
    Inside an example_guard the state before any call is the guard's (every call that moved
    it was restored), so only a fingerprint is taken here.
    """
    mark = global_rng_mark()
    before = np.random.get_state() if counter.rng_saved is None else counter.rng_saved
    alarm = counter.alarm and timeout is not None
    if alarm:
        signal.setitimer(signal.ITIMER_REAL, float(timeout))  # type: ignore[arg-type]
    try:
        return fn()
    except _CallTimeout:
        raise LayerCallError(what, f"did not return within {timeout:g} s (called with {describe()}); "
                             "raise timeout= if it is only slow") from None
    except (KeyboardInterrupt, SystemExit, LayerCallError):
        raise
    except BaseException as exc:  # noqa: BLE001 - the layer's failure, reported
        raise LayerCallError(what, f"raised {type(exc).__name__}: {exc} (called with {describe()})",
                             cause=exc) from exc
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
        # cheap (a few microseconds), and the harness's own arithmetic must not start raising
        if np.geterr() != _IGNORE_ALL:
            np.seterr(all="ignore")
            counter.note("the layer changed numpy's error state (np.seterr): restored")
        if global_rng_mark() != mark:
            np.random.set_state(before)
            counter.global_rng.add(what)
            counter.note(f"{what} used numpy's global random state (np.random.*): restored after each call; draw "
                         "from the factory's rng instead")


def as_array(value: Any, what: str, *, allow_none: bool = False) -> np.ndarray | None:
    """Accept ndarrays and numpy scalars; anything else is the layer's protocol error."""
    if value is None and allow_none:
        return None
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    kind = type(value).__name__
    hint = " (0-d for a loss: np.asarray(value))" if isinstance(value, (float, int)) else ""
    raise LayerCallError(what, f"returned {kind}, expected a numpy array{hint}")


@dataclass
class Trace:
    """What one forward + backward returned (copies, safe from later calls)."""

    out: np.ndarray
    dx: np.ndarray | None
    grads: dict[str, np.ndarray]


@dataclass
class Mutation:
    call: str
    array: str
    max_change: float
    index: tuple[int, ...]


class Context:
    """One example in one dtype: the layer, its inputs, the base trace and safe call wrappers."""

    def __init__(self, spec: LayerSpec, example: Example, layer: Any, dtype: np.dtype,
                 x64: np.ndarray, params64: Mapping[str, np.ndarray], dout64: np.ndarray | None,
                 rng: np.random.Generator, counter: Counter, verified: dict[str, float] | None = None) -> None:
        self.spec = spec
        self.example = example
        self.layer = layer
        self.dtype = np.dtype(dtype)
        self.prec: Precision = precision(self.dtype)
        self.ref: Precision = precision(REFERENCE)
        self.sizes = example.sizes(spec)
        self.rng = rng
        self.counter = counter
        self.x = x64 if spec.index_input is not None else x64.astype(self.dtype)
        self.params = {k: np.asarray(v).astype(self.dtype) for k, v in params64.items()}
        self.dout: np.ndarray | None = None if dout64 is None else dout64.astype(self.dtype)
        self.base: Trace | None = None
        #: the base forward's output, kept even when the base backward fails
        self.base_out: np.ndarray | None = None
        self.mutations: list[Mutation] = []
        self._ref_cache: dict[str, Any] = {}
        self.memo: dict[str, Any] = {}
        #: localize failures element by element (only on the final, shrunk example)
        self.detail = False
        #: tensor -> sensitivity, for each tensor whose float64 gradient this example's float64
        #: run confirmed numerically (every probe conclusive); shared by the example's contexts
        self.verified: dict[str, float] = {} if verified is None else verified

    # ----- calls into the layer -------------------------------------------------
    def set_params(self, params: Mapping[str, np.ndarray] | None) -> None:
        store = self.layer.params
        for k, v in (params or self.params).items():
            store[k] = v

    def forward_raw(self, x: np.ndarray, params: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Call forward with exactly these arrays; the returned object itself (for aliasing checks)."""
        self.set_params(params)
        self.counter.forward += 1
        out = call_layer("forward", lambda: self.layer.forward(x), lambda: _describe(x, params or self.params),
                         self.counter, self.spec.timeout)
        arr = as_array(out, "forward")
        assert arr is not None
        return arr

    def forward(self, x: np.ndarray, params: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Forward on x and params (copies, for a layer seen writing into its inputs); a copy of out."""
        if self.mutations:
            params = {k: v.copy() for k, v in (params or self.params).items()}
            x = x.copy()
        return self.forward_raw(x, params).copy()

    def backward_raw(self, dout: np.ndarray) -> tuple[np.ndarray | None, Mapping[str, Any]]:
        self.counter.backward += 1
        dx = call_layer("backward", lambda: self.layer.backward(dout), lambda: f"dout: {shape_text(dout)}",
                        self.counter, self.spec.timeout)
        arr = as_array(dx, "backward", allow_none=self.spec.index_input is not None)
        grads = getattr(self.layer, "grads", None)
        if not isinstance(grads, Mapping):
            if not self.params:
                grads = {}
            else:
                raise LayerCallError("backward", f"left layer.grads as {type(grads).__name__}, expected a dict "
                                     f"with keys {sorted(self.params)}")
        return arr, grads

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Backward on dout (a copy, for a layer seen writing into it); copies of dx and of every grad."""
        dx, grads = self.backward_raw(dout.copy() if self.mutations else dout)
        out_grads: dict[str, np.ndarray] = {}
        for k, g in grads.items():
            a = as_array(g, f"backward (grads[{k!r}])")
            assert a is not None
            out_grads[k] = a.copy()
        return (None if dx is None else dx.copy()), out_grads

    def trace(self, x: np.ndarray, dout: np.ndarray, params: Mapping[str, np.ndarray] | None = None) -> Trace:
        out = self.forward(x, params)
        dx, grads = self.backward(dout)
        return Trace(out, dx, grads)

    # ----- the base trace ------------------------------------------------------
    def run_base(self, draw_dout_fn: Callable[[tuple[int, ...]], np.ndarray]) -> None:
        """Forward and backward on the example's arrays, watching for in-place writes."""
        x_keep = self.x.copy()
        p_keep = {k: v.copy() for k, v in self.params.items()}
        out = self.forward_raw(self.x, self.params).copy()
        self.base_out = out
        self._note_mutations("forward", x_keep, p_keep, None)
        if self.dout is None:
            self.dout = draw_dout_fn(out.shape).astype(self.dtype)
        dout_keep = self.dout.copy()
        dx, grads = self.backward_raw(self.dout)
        dx = None if dx is None else dx.copy()
        grads_c: dict[str, np.ndarray] = {}
        for k, g in grads.items():
            a = as_array(g, f"backward (grads[{k!r}])")
            assert a is not None
            grads_c[k] = a.copy()
        self._note_mutations("backward", x_keep, p_keep, dout_keep)
        # later checks work from pristine values even if the layer wrote into them
        self.x, self.params, self.dout = x_keep, p_keep, dout_keep
        self.set_params(None)
        self.base = Trace(out, dx, grads_c)

    def _note_mutations(self, call: str, x_keep: np.ndarray, p_keep: Mapping[str, np.ndarray],
                        dout_keep: np.ndarray | None) -> None:
        pairs: list[tuple[str, np.ndarray, np.ndarray]] = [("x", self.x, x_keep)]
        pairs += [(f"params[{k!r}]", self.layer.params.get(k, v) if hasattr(self.layer.params, "get") else v, v)
                  for k, v in p_keep.items()]
        if dout_keep is not None and self.dout is not None:
            pairs.append(("dout", self.dout, dout_keep))
        for name, now, before in pairs:
            if not isinstance(now, np.ndarray) or now.shape != before.shape:
                continue
            if any(m.array == name for m in self.mutations) or same_values(now, before):
                continue
            diff = np.abs(np.asarray(now, dtype=np.float64) - np.asarray(before, dtype=np.float64))
            changed = ~((now == before) | (np.isnan(np.asarray(now, dtype=np.float64)) & np.isnan(np.asarray(before, dtype=np.float64))))
            if np.any(changed):
                idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(changed, np.nan_to_num(diff, nan=np.inf), -1))), now.shape)) if now.ndim else ()
                self.mutations.append(Mutation(call, name, float(np.nanmax(np.where(changed, diff, 0))), idx))

    # ----- the float64 reference the numerical side uses ----------------------
    # float64 copies made once (after the base trace, whose values they are)
    def _as_ref(self, a: np.ndarray, dtype: Any = REFERENCE) -> np.ndarray:
        """`a` in `dtype`: `a` itself when it is in it already and the base trace saw the layer
        write into none of its inputs (a copy of a large tensor costs as much as a forward)."""
        if a.dtype == dtype and not self.mutations:
            return a
        return a.astype(dtype)

    @property
    def x_ref(self) -> np.ndarray:
        if "x_ref" not in self._ref_cache:
            self._ref_cache["x_ref"] = self._as_ref(self.x, self.x.dtype if self.spec.index_input is not None
                                                    else REFERENCE)
        return self._ref_cache["x_ref"]

    @property
    def params_ref(self) -> dict[str, np.ndarray]:
        if "params_ref" not in self._ref_cache:
            self._ref_cache["params_ref"] = {k: self._as_ref(v) for k, v in self.params.items()}
        return self._ref_cache["params_ref"]

    @property
    def dout_ref(self) -> np.ndarray:
        if "dout_ref" not in self._ref_cache:
            assert self.dout is not None
            self._ref_cache["dout_ref"] = self._as_ref(self.dout)
        return self._ref_cache["dout_ref"]

    def _reference_trace(self) -> Trace:
        """Forward and backward in float64 at this example's (rounded) values."""
        if "trace_ref" not in self._ref_cache:
            assert self.base is not None
            if self.dtype == REFERENCE:
                self._ref_cache["trace_ref"] = self.base
            else:
                self._ref_cache["trace_ref"] = self.trace(self.x_ref, self.dout_ref, self.params_ref)
                self.set_params(None)
        return self._ref_cache["trace_ref"]

    def out_ref(self) -> np.ndarray:
        """The float64 forward at this example's (rounded) values."""
        return np.asarray(self._reference_trace().out, dtype=REFERENCE)

    def grad_ref(self, tensor: str) -> np.ndarray | None:
        """The layer's own float64 gradient at this example's values, when this run is in another dtype.

        Its gap to this dtype's gradient is the round-off this dtype really has, which an error
        model cannot see inside a black box (cancellation in log(1 + tiny), p - 1, ...).
        """
        if self.dtype == REFERENCE:
            return None
        tr = self._reference_trace()
        g = tr.dx if tensor == "x" else tr.grads.get(tensor)
        return None if g is None else np.asarray(g, dtype=REFERENCE)

    def loss_ref(self, tensor: str, value: np.ndarray) -> float:
        """L = <out, dout> in float64 with one tensor ("x" or a param name) replaced."""
        if tensor == "x":
            out = self.forward_raw(value, self.params_ref)
        else:
            params = dict(self.params_ref)
            params[tensor] = value
            out = self.forward_raw(self.x_ref, params)
        return float(np.sum(np.asarray(out, dtype=REFERENCE) * self.dout_ref))

    def loss_scale(self) -> float:
        """S = sum |out * dout|: the magnitude the loss's round-off is relative to."""
        return float(np.sum(np.abs(self.out_ref() * self.dout_ref)))

    def natural(self, tensor: str) -> float:
        """Per-element magnitude of dL/d(tensor) before cancellation: S / (numel * rms).

        Gradients that are small because large terms cancel (a normalization, a softmax
        Jacobian) carry round-off on the scale of those terms, not of the result.
        """
        key = f"natural:{tensor}"
        if key not in self.memo:
            value = self.x_ref if tensor == "x" else self.params_ref[tensor]
            n = max(int(np.size(value)), 1)
            rms = float(np.sqrt(np.mean(np.square(value)))) if np.size(value) else 0.0
            self.memo[key] = self.loss_scale() / (n * rms) if rms > 0 else 0.0
        return self.memo[key]

    def roundoff(self, array: str) -> float:
        """Round-off carried by a returned array ("out", "dx" or a param name), measured.

        Every input (x, dout, params) is perturbed by a few ulps and the layer re-run: the
        change of each result is its round-off as this layer's arithmetic really makes it,
        including cancellation inside a black box no error model can see. A change beyond
        sqrt(eps) of the array's scale is a discontinuity (a tie broken), not round-off, and is
        ignored. A gradient's scale is at least SAFETY times its natural magnitude (see natural):
        where the true gradient is ~0 because its terms cancel (LayerNorm's dgamma on a constant
        row, x - mean = 0), a low precision returns that cancellation's round-off amplified by
        1/sqrt(var + eps) and nothing else, a few sqrt(eps) of the natural scale; a broken tie
        moves a gradient by a whole element of it.
        """
        if "jitter" not in self.memo:
            assert self.base is not None and self.dout is not None
            rng = np.random.default_rng([self.example.seed, 0x5EED])

            def jit(a: np.ndarray) -> np.ndarray:
                return jitter(a, rng)

            x = self.x if self.spec.index_input is not None else jit(self.x)
            found: dict[str, float] = {}
            try:
                tr = self.trace(x, jit(self.dout), {k: jit(v) for k, v in self.params.items()})
            except LayerCallError:
                tr = None
            self.set_params(None)
            if tr is not None:
                self.memo["jitter_out"] = _jitter_delta(tr.out, self.base.out, self.prec)
                pairs = [("out", tr.out, self.base.out), ("dx", tr.dx, self.base.dx)]
                pairs += [(k, tr.grads.get(k), g) for k, g in self.base.grads.items()]
                for name, a, b in pairs:
                    if a is None or b is None or a.shape != b.shape:
                        continue
                    with np.errstate(all="ignore"):
                        delta = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))) if a.size else 0.0
                    size = float(np.max(np.abs(np.asarray(b, dtype=np.float64)))) if b.size else 0.0
                    if name == "dx" and self.spec.index_input is None:
                        size = max(size, SAFETY * self.natural("x"))
                    elif name not in ("out", "dx"):
                        size = max(size, SAFETY * self.natural(name))
                    if np.isfinite(delta) and delta <= np.sqrt(self.prec.eps) * max(size, 1e-300):
                        found[name] = delta
            self.memo["jitter"] = found
        return self.memo["jitter"].get(array, 0.0)

    def loss_noise_measured(self) -> float:
        """Round-off of one float64 loss evaluation, measured: sum |dout * change of out| when
        x and the params move by a few ulps (catches cancellation inside the forward, such as
        x - target with x close to the target)."""
        if "loss_noise" not in self.memo:
            if self.dtype == REFERENCE:
                self.roundoff("out")
                delta = self.memo.get("jitter_out")
            else:
                rng = np.random.default_rng([self.example.seed, 0x5EEE])

                def jit(a: np.ndarray) -> np.ndarray:
                    return jitter(a, rng)

                x = self.x_ref if self.spec.index_input is not None else jit(self.x_ref)
                try:
                    out = self.forward(x, {k: jit(v) for k, v in self.params_ref.items()}).astype(REFERENCE)
                    delta = _jitter_delta(out, self.out_ref(), self.ref)
                except LayerCallError:
                    delta = None
                self.set_params(None)
            self.memo["loss_noise"] = 0.0 if delta is None else float(np.sum(np.abs(self.dout_ref) * delta))
        return self.memo["loss_noise"]

    def terms(self) -> int:
        """How many numbers one loss evaluation touches (for the error-growth model)."""
        n = int(np.size(self.x)) + sum(int(v.size) for v in self.params.values())
        if self.base is not None:
            n += int(self.base.out.size)
        return n

    def expected_shape(self, shape: tuple[str | int, ...]) -> tuple[int, ...]:
        return resolve_shape(shape, self.sizes)


def jitter(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`a` with every element moved by 1 to JITTER_ULPS ulps of its own dtype, either way."""
    steps = rng.integers(1, int(JITTER_ULPS) + 1, size=a.shape) * rng.choice([-1, 1], size=a.shape)
    return (a + steps * np.spacing(a)).astype(a.dtype)


def _jitter_delta(a: np.ndarray, b: np.ndarray, prec: Precision) -> np.ndarray | None:
    """|a - b| element-wise, zero where the change is a discontinuity (beyond sqrt(eps) of b)."""
    if a.shape != b.shape:
        return None
    with np.errstate(all="ignore"):
        d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
        ok = np.isfinite(d) & (d <= np.sqrt(prec.eps) * np.maximum(np.abs(np.asarray(b, dtype=np.float64)), 1e-300))
    return np.where(ok, d, 0.0)


def build_layer(spec: LayerSpec, example: Example, rng: np.random.Generator, counter: Counter) -> Any:
    """Call the factory; a protocol violation or a raising factory is the layer's failure."""
    sizes = example.sizes(spec)
    counter.build += 1
    layer = call_layer("factory", lambda: spec.make(sizes, rng), lambda: f"dims={sizes}", counter, spec.timeout)
    for method, fix in (("forward", "forward='...'"), ("backward", "backward='backward_pass'")):
        if not callable(getattr(layer, method, None)):
            raise LayerCallError("factory", missing_method_message(layer, method, fix=fix))
    params = getattr(layer, "params", None)
    if params is None:
        raise LayerCallError("factory", f"built a {type(layer).__name__} with no 'params' dict: expected "
                             "layer.params = {name: array} (an empty dict for a layer without params)")
    if not isinstance(params, Mapping) or not hasattr(params, "__setitem__"):
        raise LayerCallError("factory", f"built a layer whose params is a {type(params).__name__}, expected a dict")
    for k, v in params.items():
        if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
            raise LayerCallError("factory", f"params[{k!r}] is {shape_text(v)}, expected a float numpy array")
    return layer


class Session:
    """The arrays of one example, shared by its dtype contexts."""

    def __init__(self, spec: LayerSpec, example: Example, counter: Counter) -> None:
        self.spec = spec
        self.example = example
        self.counter = counter
        ss = np.random.SeedSequence(example.seed)
        self.rng_layer, self.rng_x, self.rng_dout, self.rng_params, self.rng_probe = (
            np.random.default_rng(s) for s in ss.spawn(5))
        self.sizes = example.sizes(spec)
        self.layer = build_layer(spec, example, self.rng_layer, counter)
        params = self.layer.params
        if spec.redraw_params:
            self.params64 = {k: redraw_param(v, self.rng_params) for k, v in params.items()}
        else:
            self.params64 = {k: np.asarray(v, dtype=np.float64).copy() for k, v in params.items()}
        shape = resolve_shape(spec.input, self.sizes)
        self.x64 = draw_input(spec, shape, self.sizes, self.rng_x, example.values)
        self.dout64: np.ndarray | None = None
        self.verified: dict[str, float] = {}

    def new_context(self, dtype: np.dtype) -> Context:
        return Context(self.spec, self.example, self.layer, dtype, self.x64, self.params64, self.dout64,
                       self.rng_probe, self.counter, self.verified)

    def run_base(self, ctx: Context) -> None:
        ctx.run_base(self._draw_dout)

    def context(self, dtype: np.dtype) -> Context:
        """A context in `dtype` with its base trace taken."""
        ctx = self.new_context(dtype)
        self.run_base(ctx)
        return ctx

    def _draw_dout(self, shape: tuple[int, ...]) -> np.ndarray:
        self.dout64 = draw_dout(shape, self.rng_dout)
        return self.dout64
