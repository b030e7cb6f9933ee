"""Single-head scaled dot-product self-attention over ``(n, t, d)`` sequences."""
from __future__ import annotations

import math

import numpy as np

from gradharness import layer


@layer(input="n t d", output="n t d", dims={"n": (1, 4), "t": (1, 4), "d": (1, 6), "dk": (1, 6)})
class Attention:
    """``softmax(q k^T / sqrt(dk)) v @ Wo`` with ``q, k, v = x @ Wq, x @ Wk, x @ Wv``.

    ``Wq``, ``Wk``, ``Wv`` are (d, dk) and ``Wo`` is (dk, d). No mask: every
    position attends to every position of its own sequence.
    """

    def __init__(self, d: int, dk: int, rng: np.random.Generator) -> None:
        self.params = {
            "Wq": rng.uniform(-1.0, 1.0, (d, dk)) / np.sqrt(d),
            "Wk": rng.uniform(-1.0, 1.0, (d, dk)) / np.sqrt(d),
            "Wv": rng.uniform(-1.0, 1.0, (d, dk)) / np.sqrt(d),
            "Wo": rng.uniform(-1.0, 1.0, (dk, d)) / np.sqrt(dk),
        }
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        Wq, Wk, Wv, Wo = (self.params[name] for name in ("Wq", "Wk", "Wv", "Wo"))
        q, k, v = x @ Wq, x @ Wk, x @ Wv  # (n, t, dk)
        # dividing by sqrt(dk) keeps the scores' variance independent of dk
        scale = 1 / math.sqrt(Wq.shape[1])
        scores = q @ k.transpose(0, 2, 1) * scale  # (n, t, t)
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = e / e.sum(axis=-1, keepdims=True)
        z = attn @ v  # (n, t, dk)
        self.cache = (x, q, k, v, attn, z, scale, Wq, Wk, Wv, Wo)
        return z @ Wo

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, q, k, v, attn, z, scale, Wq, Wk, Wv, Wo = self.cache
        dz = dout @ Wo.T
        dattn = dz @ v.transpose(0, 2, 1)
        dv = attn.transpose(0, 2, 1) @ dz
        # softmax Jacobian-vector product over each row of scores, then the 1/sqrt(dk)
        dscores = attn * (dattn - np.sum(dattn * attn, axis=-1, keepdims=True)) * scale
        dq = dscores @ k
        dk = dscores.transpose(0, 2, 1) @ q
        # the weights are shared by every sequence and position: sum over n and t
        self.grads["Wq"] = np.einsum("ntd,ntk->dk", x, dq)
        self.grads["Wk"] = np.einsum("ntd,ntk->dk", x, dk)
        self.grads["Wv"] = np.einsum("ntd,ntk->dk", x, dv)
        self.grads["Wo"] = np.einsum("ntk,ntd->kd", z, dout)
        # x feeds q, k and v: its gradient is the sum of the three paths
        return dq @ Wq.T + dk @ Wk.T + dv @ Wv.T
