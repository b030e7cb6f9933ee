"""Every reference layer passes every check that applies; a planted bug in each family is caught."""
from __future__ import annotations

import numpy as np
import pytest

import gradharness as gh
import reference_layers as rl
from reference_layers.conv import _taps

DECLARED = list(gh.declared_in(rl))


def test_every_reference_layer_is_declared() -> None:
    names = {d.name for d in DECLARED}
    assert names >= {"Linear", "OctaveLinear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
                     "SoftmaxCrossEntropy", "MSELoss", "BatchNorm1d", "LayerNorm", "Conv2d", "MaxPool2d",
                     "AvgPool2d", "Embedding", "Dropout", "RNN", "LSTM", "Attention", "TwoLayerNet"}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("decl", DECLARED, ids=[d.name for d in DECLARED])
def test_reference_layer_passes(decl: gh.Declaration, seed: int) -> None:
    report = gh.check_layer(decl.target, max_examples=30, seed=seed)
    assert report.passed, str(report)
    assert report.examples >= 30


# ----- planted bugs in the families of issue 3 ---------------------------------------------
def _make(cls: type, base: type) -> type:
    """A buggy subclass that keeps the reference layer's declaration (its spec)."""
    decl = gh.declaration_of(base)
    assert decl is not None
    return gh.layer(**decl.options)(type(cls.__name__, (base,), dict(vars(cls))))


class ConvStrideIgnoredInDx:
    def backward(self, dout: np.ndarray) -> np.ndarray:
        (_, _, h, w), xp, W = self.cache
        s, p, k = self.stride, self.pad, W.shape[-1]
        ho, wo = dout.shape[2:]
        dxp, dW = np.zeros_like(xp), np.zeros_like(W)
        for i, j, rows, cols in _taps(k, s, ho, wo):
            dW[:, :, i, j] = np.einsum("nfhw,nchw->fc", dout, xp[:, :, rows, cols])
            dxp[:, :, i:i + ho, j:j + wo] += np.einsum("nfhw,fc->nchw", dout, W[:, :, i, j])  # bug: stride 1
        self.grads = {"W": dW, "b": dout.sum(axis=(0, 2, 3))}
        return dxp[:, :, p:p + h, p:p + w]


class ConvEdgePaddedForward:
    def forward(self, x: np.ndarray) -> np.ndarray:
        W, b = self.params["W"], self.params["b"]
        s, p, k = self.stride, self.pad, W.shape[-1]
        ho, wo = (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="edge")  # bug: backward assumes zero padding
        out = np.zeros((x.shape[0], W.shape[0], ho, wo), dtype=np.result_type(x, W))
        for i, j, rows, cols in _taps(k, s, ho, wo):
            out += np.einsum("nchw,fc->nfhw", xp[:, :, rows, cols], W[:, :, i, j])
        self.cache = (x.shape, xp, W)
        return out + b[:, None, None]


class PoolAssignsInsteadOfAccumulating:
    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, dtype, arg = self.cache
        n, c, ho, wo = dout.shape
        di, dj = np.divmod(arg, self.k)
        rows = self.stride * np.arange(ho)[:, None] + di
        cols = self.stride * np.arange(wo)[None, :] + dj
        dx = np.zeros(shape, dtype=dtype)
        dx[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols] += dout  # bug
        return dx


class EmbeddingFancyIndexUpdate:
    def backward(self, dout: np.ndarray) -> None:
        idx, W = self.cache
        dW = np.zeros_like(W)
        dW[idx] += dout  # bug: repeated indices keep only one contribution
        self.grads["W"] = dW


class RNNTruncatedBPTT:
    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, hs, Wx, Wh, b = self.cache
        dx = np.zeros_like(x)
        dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
        for s in reversed(range(x.shape[1])):
            da = dout[:, s] * (1 - hs[:, s + 1] ** 2)  # bug: no gradient from step s + 1
            dWx += x[:, s].T @ da
            dWh += hs[:, s].T @ da
            db += da.sum(axis=0)
            dx[:, s] = da @ Wx.T
        self.grads.update(Wx=dWx, Wh=dWh, b=db)
        return dx


class AttentionDiagonalSoftmax(rl.Attention):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, q, k, v, attn, z, scale, Wq, Wk, Wv, Wo = self.cache
        dz = dout @ Wo.T
        dattn = dz @ v.transpose(0, 2, 1)
        dv = attn.transpose(0, 2, 1) @ dz
        dscores = attn * (1 - attn) * dattn * scale  # bug: the diagonal of the softmax Jacobian only
        dq, dk = dscores @ k, dscores.transpose(0, 2, 1) @ q
        self.grads = {"Wq": np.einsum("ntd,ntk->dk", x, dq), "Wk": np.einsum("ntd,ntk->dk", x, dk),
                      "Wv": np.einsum("ntd,ntk->dk", x, dv), "Wo": np.einsum("ntk,ntd->kd", z, dout)}
        return dq @ Wq.T + dk @ Wk.T + dv @ Wv.T


PLANTED = [
    (ConvStrideIgnoredInDx, rl.Conv2d, "grad-input"),
    (ConvEdgePaddedForward, rl.Conv2d, "grad-input"),
    (PoolAssignsInsteadOfAccumulating, rl.MaxPool2d, "grad-input"),
    (EmbeddingFancyIndexUpdate, rl.Embedding, "grad-params"),
    (RNNTruncatedBPTT, rl.RNN, "grad-input"),
    (AttentionDiagonalSoftmax, rl.Attention, "grad-input"),
]


@pytest.mark.parametrize(("bug", "base", "check"), PLANTED, ids=[p[0].__name__ for p in PLANTED])
def test_planted_bug_in_reference_family_is_caught(bug: type, base: type, check: str) -> None:
    report = gh.check_layer(_make(bug, base), max_examples=40, seed=0)
    assert check in report.failed_checks(), str(report)
