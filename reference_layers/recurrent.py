"""Recurrent layers over ``(n, t, d)`` sequences, with full backpropagation through time.

Both start from a zero state (not a parameter) and return every hidden state,
``(n, t, hdim)``, so the loss may depend on any time step.
"""
from __future__ import annotations

import numpy as np

from gradharness import layer

from .activations import sigmoid


@layer(
    input="n t d",
    output="n t hdim",
    dims={"n": (1, 4), "t": (1, 4), "d": (1, 6), "hdim": (1, 6)},
    bias=("b",),
)
class RNN:
    """Vanilla RNN: ``h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b)``."""

    def __init__(self, d: int, hdim: int, rng: np.random.Generator) -> None:
        self.params = {
            "Wx": rng.uniform(-1.0, 1.0, (d, hdim)) / np.sqrt(d),
            "Wh": rng.uniform(-1.0, 1.0, (hdim, hdim)) / np.sqrt(hdim),
            "b": np.zeros(hdim),
        }
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        Wx, Wh, b = self.params["Wx"], self.params["Wh"], self.params["b"]
        n, t, _ = x.shape
        hs = np.zeros((n, t + 1, Wh.shape[0]), dtype=np.result_type(x, Wh))  # hs[:, 0] is h0
        for s in range(t):
            hs[:, s + 1] = np.tanh(x[:, s] @ Wx + hs[:, s] @ Wh + b)
        self.cache = (x, hs, Wx, Wh, b)
        return hs[:, 1:].copy()  # a copy: hs stays private to the cache

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, hs, Wx, Wh, b = self.cache
        dx = np.zeros_like(x)
        dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
        dh_next = np.zeros_like(dout[:, 0])  # gradient flowing back from step s + 1
        for s in reversed(range(x.shape[1])):
            dh = dout[:, s] + dh_next
            da = dh * (1 - hs[:, s + 1] ** 2)
            # the weights are shared by every step: their gradients add up over time
            dWx += x[:, s].T @ da
            dWh += hs[:, s].T @ da
            db += da.sum(axis=0)
            dx[:, s] = da @ Wx.T
            dh_next = da @ Wh.T
        self.grads.update(Wx=dWx, Wh=dWh, b=db)
        return dx


@layer(
    input="n t d",
    output="n t hdim",
    dims={"n": (1, 4), "t": (1, 4), "d": (1, 6), "hdim": (1, 6)},
    bias=("b",),
)
class LSTM:
    """LSTM with gates packed as ``[input, forget, output, candidate]`` along the 4 * hdim axis."""

    def __init__(self, d: int, hdim: int, rng: np.random.Generator) -> None:
        self.params = {
            "Wx": rng.uniform(-1.0, 1.0, (d, 4 * hdim)) / np.sqrt(d),
            "Wh": rng.uniform(-1.0, 1.0, (hdim, 4 * hdim)) / np.sqrt(hdim),
            "b": np.zeros(4 * hdim),
        }
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        Wx, Wh, b = self.params["Wx"], self.params["Wh"], self.params["b"]
        n, t, _ = x.shape
        H = Wh.shape[0]
        h = np.zeros((n, H), dtype=np.result_type(x, Wh))
        c = np.zeros_like(h)
        hs = np.empty((n, t, H), dtype=h.dtype)
        steps = []
        for s in range(t):
            a = x[:, s] @ Wx + h @ Wh + b
            i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H]), sigmoid(a[:, 2 * H : 3 * H])
            g = np.tanh(a[:, 3 * H :])
            h_prev, c_prev = h, c
            c = f * c_prev + i * g
            tanh_c = np.tanh(c)
            h = o * tanh_c
            hs[:, s] = h
            steps.append((h_prev, c_prev, i, f, o, g, tanh_c))
        self.cache = (x, Wx, Wh, b, steps)
        return hs

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, Wx, Wh, b, steps = self.cache
        dx = np.zeros_like(x)
        dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
        dh_next = np.zeros_like(dout[:, 0])
        dc_next = np.zeros_like(dh_next)
        for s in reversed(range(x.shape[1])):
            h_prev, c_prev, i, f, o, g, tanh_c = steps[s]
            dh = dout[:, s] + dh_next
            # the cell state reaches the loss through h_s and through c_{s+1}
            dc = dc_next + dh * o * (1 - tanh_c**2)
            # gradient of each gate's pre-activation: dL/dgate times sigmoid' or tanh'
            da = np.concatenate(
                [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dh * tanh_c * o * (1 - o), dc * i * (1 - g**2)],
                axis=1,
            )
            dWx += x[:, s].T @ da
            dWh += h_prev.T @ da
            db += da.sum(axis=0)
            dx[:, s] = da @ Wx.T
            dh_next = da @ Wh.T
            dc_next = dc * f
        self.grads.update(Wx=dWx, Wh=dWh, b=db)
        return dx
