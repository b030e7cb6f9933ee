"""Each source mutation operator makes the expected one-line change on a small class."""
from __future__ import annotations

import ast
import textwrap

import pytest

import gradharness.mutate as gm
from gradharness.mutate import operators as ops

TEMPLATE = """\
class L:
    def __init__(self, d):
        self.n = np.ones(d).sum(axis=0) / 2

    def backward(self, dout):
        \"\"\"Docstrings are not code: x.T @ y - z.\"\"\"
        x, W = self.cache
{body}
"""

# (operator, body lines, [(original line, mutated line)] expected in source order)
CASES = [
    ("matmul-to-mul", ["return x @ W + b"], [("return x @ W + b", "return x * W + b")]),
    ("matmul-to-mul", ["y = np.dot(x, W)", "return x.dot(a + b)"],
     [("y = np.dot(x, W)", "y = x * W"), ("return x.dot(a + b)", "return x * (a + b)")]),
    ("mul-to-matmul", ["return dout * self.mask * 2"], [("return dout * self.mask * 2", "return dout @ self.mask * 2")]),
    ("drop-transpose", ["dW = x.T @ dout", "dk = q.transpose(0, 2, 1) @ v", "z = np.transpose(a)"],
     [("dW = x.T @ dout", "dW = x @ dout"), ("dk = q.transpose(0, 2, 1) @ v", "dk = q @ v"),
      ("z = np.transpose(a)", "z = a")]),
    ("swap-axis", ["db = dout.sum(axis=0)", "m = x.max(axis=-1, keepdims=True)"],
     [("db = dout.sum(axis=0)", "db = dout.sum(axis=1)"),
      ("m = x.max(axis=-1, keepdims=True)", "m = x.max(axis=0, keepdims=True)")]),
    ("swap-axis", ["db = dout.sum(axis=(0, 2, 3))"],
     [("db = dout.sum(axis=(0, 2, 3))", "db = dout.sum(axis=(1, 2, 3))"),
      ("db = dout.sum(axis=(0, 2, 3))", "db = dout.sum(axis=(2, 3))")]),
    ("sum-to-mean", ["db = dout.sum(axis=0)", "t = np.sum(a * b)"],
     [("db = dout.sum(axis=0)", "db = dout.mean(axis=0)"), ("t = np.sum(a * b)", "t = np.mean(a * b)")]),
    ("mean-to-sum", ["c = x - x.mean(axis=0)"], [("c = x - x.mean(axis=0)", "c = x - x.sum(axis=0)")]),
    ("drop-keepdims", ["s = e / e.sum(axis=-1, keepdims=True)"],
     [("s = e / e.sum(axis=-1, keepdims=True)", "s = e / e.sum(axis=-1)")]),
    ("add-keepdims", ["db = dout.sum(axis=0)"], [("db = dout.sum(axis=0)", "db = dout.sum(axis=0, keepdims=True)")]),
    ("first-sample-only", ["db = dout.sum(axis=0)", "dc = dout.sum(axis=(0, 2, 3))", "t = dout.sum(axis=1)"],
     [("db = dout.sum(axis=0)", "db = dout[0]"), ("dc = dout.sum(axis=(0, 2, 3))", "dc = dout[0].sum(axis=(1, 2))")]),
    ("drop-term", ["return x @ W + b"], [("return x @ W + b", "return x @ W")]),
    ("drop-negation", ["return -dout * s", "k = -1"], [("return -dout * s", "return dout * s")]),
    ("sub-to-add", ["d = a - b", "dx[rows, labels] -= 1"],
     [("d = a - b", "d = a + b"), ("dx[rows, labels] -= 1", "dx[rows, labels] += 1")]),
    ("drop-factor", ["return 2 * dout / n"],
     [("return 2 * dout / n", "return 2 * dout"), ("return 2 * dout / n", "return dout / n")]),
    ("add-at-to-index", ["np.add.at(dW, idx, dout)"], [("np.add.at(dW, idx, dout)", "dW[idx] += dout")]),
    ("assign-to-accumulate", ['self.grads["W"] = x.T @ dout', "self.grads.update(b=db)"],
     [('self.grads["W"] = x.T @ dout', 'self.grads["W"] = self.grads.get("W", 0) + x.T @ dout'),
      ("self.grads.update(b=db)", "self.grads.update(b=self.grads.get('b', 0) + db)")]),
    ("write-dout", ["dx = dout @ W.T", "return dx"],
     [("return dx", "_gh_result = dx; dout *= 0.5; return _gh_result")]),
    ("einsum-transpose", ['g = np.einsum("ntd,ntk->dk", x, dq)'],
     [('g = np.einsum("ntd,ntk->dk", x, dq)', "g = np.einsum('ntd,ntk->kd', x, dq)")]),
]


def _source(body: list[str]) -> str:
    return TEMPLATE.format(body=textwrap.indent("\n".join(body), " " * 8))


@pytest.mark.parametrize("op,body,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_operator_makes_the_expected_one_line_change(op: str, body: list[str], expected: list[tuple[str, str]]) -> None:
    src = _source(body)
    edits = ops.find_sites(src, [op])
    assert [(e.original.strip(), e.mutated.strip()) for e in edits] == expected
    for e in edits:
        assert e.operator == op
        # exactly one line differs, and the mutated source is the original with that line replaced
        before, after = src.splitlines(), e.source.splitlines()
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        assert changed == [e.lineno - 1]
        assert len(after) == len(before)
        ast.parse(e.source)


def test_every_source_operator_has_a_case_and_a_description() -> None:
    assert {c[0] for c in CASES} | {"swap-cached"} == set(ops.SOURCE_OPERATORS)
    for name, desc in gm.list_mutators().items():
        assert name == name.lower() and " " not in name and desc and "\n" not in desc


def test_docstrings_annotations_and_init_are_not_mutated() -> None:
    src = _source(["pass"])
    assert ops.find_sites(src) == []  # the docstring's `x.T @ y - z` and __init__'s reduction are left alone
    with_init = ops.find_sites(src, ["swap-axis", "drop-factor"], include_init=True)
    assert [e.mutated.strip() for e in with_init] == ["self.n = np.ones(d).sum(axis=0)", "self.n = np.ones(d).sum(axis=1) / 2"]


def test_swap_cached_swaps_only_names_of_the_same_recorded_shape() -> None:
    src = _source(["a, b, c = self.cache", "return a * b * c"])
    sites = ops.tuple_unpack_sites(src)
    assert [(names) for _, _, names in sites] == [["x", "W"], ["a", "b", "c"]]
    key = next((ln, col) for ln, col, names in sites if names == ["a", "b", "c"])
    same, other = ("array", (3, 4)), ("array", (4,))
    edits = ops.find_sites(src, ["swap-cached"], signatures={key: [same, other, same]})
    assert [(e.mutated.strip(), e.tag) for e in edits] == [("c, b, a = self.cache", "a-c")]


def test_a_multi_line_site_keeps_every_later_line_in_place() -> None:
    src = _source(["return s * (", "    dout - t", ")", "y = 1"])
    (inner,) = ops.find_sites(src, ["sub-to-add"])
    assert (inner.original.strip(), inner.mutated.strip()) == ("dout - t", "dout + t")
    (outer,) = ops.find_sites(src, ["mul-to-matmul"])
    assert outer.original.splitlines()[0].strip() == "return s * ("
    assert outer.mutated.splitlines()[0].strip() == "return s @ ("
    for e in (inner, outer):
        assert len(e.source.splitlines()) == len(src.splitlines())
        assert e.source.splitlines()[-1] == src.splitlines()[-1]


def test_the_shown_text_is_what_compiles_even_where_precedence_needs_parentheses() -> None:
    # dropping `2 *` from `w - 2 * (a + b)` must keep the parentheses the AST implies
    src = _source(["return w - 2 * (a + b)"])
    edits = ops.find_sites(src, ["drop-factor"])
    assert [e.mutated.strip() for e in edits] == ["return w - (a + b)"]
