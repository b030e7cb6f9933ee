"""2-D convolution and pooling over NCHW inputs.

The loops run over the k * k offsets ``(i, j)`` of the window only; the batch,
the channels and every output position are handled at once by a strided slice:
``x[:, :, i : i + stride * ho : stride, ...]`` holds, at output row ``y``, the
input row ``stride * y + i``.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gradharness import layer


def out_size(size: int, k: int, stride: int, pad: int = 0) -> int:
    """Number of window positions along one axis."""
    return (size + 2 * pad - k) // stride + 1


def _taps(k: int, stride: int, ho: int, wo: int):
    """Yield ``(i, j, rows, cols)``: kernel offset and the slices of input it meets."""
    for i in range(k):
        for j in range(k):
            yield i, j, slice(i, i + stride * ho, stride), slice(j, j + stride * wo, stride)


@layer(
    input="n c h w",
    output="n f ho wo",
    dims={"n": (1, 4), "c": (1, 4), "f": (1, 4), "h": (1, 6), "w": (1, 6)},
    hyper={"k": [1, 2, 3], "stride": [1, 2], "pad": [0, 1]},
    derived={
        "ho": lambda d: out_size(d["h"], d["k"], d["stride"], d["pad"]),
        "wo": lambda d: out_size(d["w"], d["k"], d["stride"], d["pad"]),
    },
    constraints=(lambda d: d["h"] + 2 * d["pad"] >= d["k"] and d["w"] + 2 * d["pad"] >= d["k"],),
    bias=("b",),
)
class Conv2d:
    """Cross-correlation with ``W`` (f, c, k, k) and bias ``b`` (f,), zero padding ``pad``."""

    def __init__(self, c: int, f: int, k: int, stride: int, pad: int, rng: np.random.Generator) -> None:
        self.stride, self.pad = int(stride), int(pad)
        self.params = {"W": rng.uniform(-1.0, 1.0, (f, c, k, k)) / np.sqrt(c * k * k), "b": np.zeros(f)}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        W, b = self.params["W"], self.params["b"]
        s, p, k = self.stride, self.pad, W.shape[-1]
        ho, wo = out_size(x.shape[2], k, s, p), out_size(x.shape[3], k, s, p)
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        out = np.zeros((x.shape[0], W.shape[0], ho, wo), dtype=np.result_type(x, W))
        for i, j, rows, cols in _taps(k, s, ho, wo):
            out += np.einsum("nchw,fc->nfhw", xp[:, :, rows, cols], W[:, :, i, j])
        self.cache = (x.shape, xp, W)
        return out + b[:, None, None]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (_, _, h, w), xp, W = self.cache
        s, p, k = self.stride, self.pad, W.shape[-1]
        ho, wo = dout.shape[2:]
        dxp = np.zeros_like(xp)
        dW = np.zeros_like(W)
        for i, j, rows, cols in _taps(k, s, ho, wo):
            dW[:, :, i, j] = np.einsum("nfhw,nchw->fc", dout, xp[:, :, rows, cols])
            # += : whenever stride < k, several kernel offsets reach the same input
            dxp[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", dout, W[:, :, i, j])
        self.grads["W"] = dW
        self.grads["b"] = dout.sum(axis=(0, 2, 3))
        # the padding is not part of x: crop it off
        return dxp[:, :, p : p + h, p : p + w]


@layer(
    input="n c h w",
    output="n c ho wo",
    # h, w up to 8 so that n, c, h, w, ho, wo can all be pairwise distinct
    dims={"n": (1, 4), "c": (1, 4), "h": (2, 8), "w": (2, 8)},
    hyper={"k": [2, 3], "stride": [1, 2]},  # k=3, stride=1: overlapping windows
    derived={
        "ho": lambda d: out_size(d["h"], d["k"], d["stride"]),
        "wo": lambda d: out_size(d["w"], d["k"], d["stride"]),
    },
    constraints=(lambda d: d["h"] >= d["k"] and d["w"] >= d["k"],),
)
class MaxPool2d:
    """Maximum over each k x k window; ties go to the first maximum in row-major order."""

    def __init__(self, k: int, stride: int) -> None:
        self.k, self.stride = int(k), int(stride)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        k, s = self.k, self.stride
        # (n, c, ho, wo, k, k): a view of every window, no copy
        windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        flat = windows.reshape(*windows.shape[:4], k * k)
        # argmax returns the first maximum, so a tie always routes to the same input
        arg = flat.argmax(axis=-1)
        self.cache = (x.shape, x.dtype, arg)
        return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, dtype, arg = self.cache
        n, c, ho, wo = dout.shape
        di, dj = np.divmod(arg, self.k)
        rows = self.stride * np.arange(ho)[:, None] + di
        cols = self.stride * np.arange(wo)[None, :] + dj
        batch = np.arange(n)[:, None, None, None]
        chan = np.arange(c)[None, :, None, None]
        dx = np.zeros(shape, dtype=dtype)
        # overlapping windows can share a maximum: np.add.at accumulates, dx[idx] += would not
        np.add.at(dx, (batch, chan, rows, cols), dout)
        return dx


@layer(
    input="n c h w",
    output="n c ho wo",
    # h, w up to 8 so that n, c, h, w, ho, wo can all be pairwise distinct
    dims={"n": (1, 4), "c": (1, 4), "h": (2, 8), "w": (2, 8)},
    hyper={"k": [2, 3], "stride": [1, 2]},  # k=3, stride=1: overlapping windows
    derived={
        "ho": lambda d: out_size(d["h"], d["k"], d["stride"]),
        "wo": lambda d: out_size(d["w"], d["k"], d["stride"]),
    },
    constraints=(lambda d: d["h"] >= d["k"] and d["w"] >= d["k"],),
)
class AvgPool2d:
    """Mean over each k x k window."""

    def __init__(self, k: int, stride: int) -> None:
        self.k, self.stride = int(k), int(stride)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        k, s = self.k, self.stride
        self.cache = (x.shape, x.dtype)
        windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        return windows.mean(axis=(-2, -1))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, dtype = self.cache
        dx = np.zeros(shape, dtype=dtype)
        share = dout / (self.k * self.k)
        for _, _, rows, cols in _taps(self.k, self.stride, *dout.shape[2:]):
            dx[:, :, rows, cols] += share  # windows may overlap: accumulate
        return dx
