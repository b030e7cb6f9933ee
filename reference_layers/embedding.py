"""Embedding lookup: integer indices in, rows of a table out."""
from __future__ import annotations

import numpy as np

from gradharness import layer


@layer(input="n t", output="n t d", index_input="vocab", dims={"vocab": (1, 6), "d": (1, 6), "t": (1, 4)})
class Embedding:
    """``out = W[idx]`` with ``W`` of shape (vocab, d); indices of any shape."""

    def __init__(self, vocab: int, d: int, rng: np.random.Generator) -> None:
        self.params = {"W": rng.standard_normal((vocab, d))}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, idx: np.ndarray) -> np.ndarray:
        W = self.params["W"]
        self.cache = (idx, W)
        return W[idx]  # fancy indexing copies, so out is not a view of W

    def backward(self, dout: np.ndarray) -> None:
        """Sets ``grads["W"]`` and returns None: indices have no gradient."""
        idx, W = self.cache
        dW = np.zeros_like(W)
        # a repeated index must collect every gradient: np.add.at accumulates, dW[idx] += would not
        np.add.at(dW, idx, dout)
        self.grads["W"] = dW
