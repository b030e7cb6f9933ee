"""Source mutation operators: each rewrites ONE site of a layer's own code, the classic backprop bugs.

An operator is a small unit with a stable kebab-case name and a one-line
description. It looks at one AST node of the layer's source and proposes edits:
the node to replace, the replacement node (what is compiled) and the replacement
text (what the report shows). `find_sites` walks a class or a function, asks every
operator about every node and turns each proposal into a `SourceEdit`, whose text
is checked to parse back to exactly the replacement AST (so the diff shown is the
code that ran).
"""
from __future__ import annotations

import ast
import copy
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

#: reductions that take axis= and keepdims=
REDUCTIONS = ("sum", "mean", "max", "min", "amax", "amin", "prod", "std", "var", "nansum", "nanmean")
#: the factor the inserted in-place write multiplies dout by (dtype-preserving, never a no-op)
DOUT_WRITE_FACTOR = 0.5
#: local name the write-dout operator keeps the return value under
RETURN_TEMP = "_gh_result"


@dataclass(frozen=True)
class Proposal:
    """What an operator wants at one site: replace `node` by `new` (an expr, a stmt or a list of stmts)."""

    node: ast.AST
    new: Any
    text: str
    detail: str = ""
    tag: str = ""


@dataclass(frozen=True)
class SourceOperator:
    name: str
    description: str
    propose: Callable[[ast.AST, SiteInfo], Iterator[Proposal]]


SOURCE_OPERATORS: dict[str, SourceOperator] = {}


def operator(name: str, description: str) -> Callable[[Callable[..., Iterator[Proposal]]], Callable[..., Iterator[Proposal]]]:
    def deco(fn: Callable[..., Iterator[Proposal]]) -> Callable[..., Iterator[Proposal]]:
        SOURCE_OPERATORS[name] = SourceOperator(name, description, fn)
        return fn

    return deco


# ----- the source the operators read ------------------------------------------------------
@dataclass
class SiteInfo:
    """What an operator may ask about the code around a node."""

    source: str                       # the (dedented) source of the class or function being mutated
    lines: list[str]
    method: str = ""                  # the function the node is in
    function: ast.FunctionDef | None = None
    #: for swap-cached: (line, col) of a tuple-unpacking assignment -> per element signature (None: unknown)
    signatures: Mapping[tuple[int, int], Sequence[Any]] = field(default_factory=dict)

    def seg(self, node: ast.AST) -> str:
        return segment(self.lines, node)

    def operand(self, node: ast.AST) -> str:
        """Source of `node`, parenthesized unless it binds at least as tightly as `*`."""
        text = self.seg(node)
        if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call, ast.Constant, ast.List, ast.Tuple,
                             ast.Dict, ast.Set, ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp)):
            return text
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.MatMult, ast.Div, ast.FloorDiv,
                                                                ast.Mod, ast.Pow)):
            return text
        return f"({text})"


def _char_col(line: str, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; string slicing counts characters."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))


def segment(lines: list[str], node: ast.AST) -> str:
    l0, l1 = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
    c0 = _char_col(lines[l0], node.col_offset)  # type: ignore[attr-defined]
    c1 = _char_col(lines[l1], node.end_col_offset)  # type: ignore[attr-defined]
    if l0 == l1:
        return lines[l0][c0:c1]
    return lines[l0][c0:] + "".join(lines[l0 + 1 : l1]) + lines[l1][:c1]


def replace_segment(lines: list[str], node: ast.AST, text: str) -> list[str]:
    """The source lines with `node`'s segment replaced by `text` (same number of lines or fewer)."""
    l0, l1 = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
    c0 = _char_col(lines[l0], node.col_offset)  # type: ignore[attr-defined]
    c1 = _char_col(lines[l1], node.end_col_offset)  # type: ignore[attr-defined]
    new = lines[l0][:c0] + text + lines[l1][c1:]
    # blank lines keep every later line where it was (tracebacks point at the file's lines)
    return lines[:l0] + [new] + ["\n"] * max(0, l1 - l0 - text.count("\n")) + lines[l1 + 1 :]


# ----- helpers ------------------------------------------------------------------------------
def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float, complex)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _is_number(node.operand)
    return False


def _int_value(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _int_value(node.operand)
        return None if v is None else -v
    return None


def _int_const(v: int) -> ast.expr:
    return ast.Constant(v) if v >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-v))


def _call_name(node: ast.Call) -> tuple[str | None, str | None]:
    """(module-ish prefix, name): np.sum -> ("np", "sum"); x.sum -> ("<value>", "sum"); f -> (None, "f")."""
    f = node.func
    if isinstance(f, ast.Name):
        return None, f.id
    if isinstance(f, ast.Attribute):
        if isinstance(f.value, ast.Name) and f.value.id in ("np", "numpy"):
            return "np", f.attr
        return "<value>", f.attr
    return None, None


def _keyword(node: ast.Call, name: str) -> ast.keyword | None:
    for kw in node.keywords:
        if kw.arg == name:
            return kw
    return None


def _op_gap_swap(info: SiteInfo, node: ast.BinOp | ast.AugAssign, old: str, new: str) -> str:
    """The node's text with the operator token between its operands replaced."""
    text = info.seg(node)
    left = node.left if isinstance(node, ast.BinOp) else node.target
    right = node.right if isinstance(node, ast.BinOp) else node.value
    left_len = len(_span_text(info, node, left))
    right_start = len(_span_text(info, node, right, upto_start=True))
    gap = text[left_len:right_start]
    if old not in gap:
        return ""
    return text[:left_len] + gap.replace(old, new, 1) + text[right_start:]


def _span_text(info: SiteInfo, outer: ast.AST, inner: ast.AST, upto_start: bool = False) -> str:
    """Text of `outer` from its start to the end of `inner` (or to the start of `inner`)."""
    fake = copy.copy(inner)
    fake.lineno, fake.col_offset = outer.lineno, outer.col_offset  # type: ignore[attr-defined]
    if upto_start:
        fake.end_lineno, fake.end_col_offset = inner.lineno, inner.col_offset  # type: ignore[attr-defined]
    return segment(info.lines, fake)


def _is_grads_subscript(node: ast.AST) -> bool:
    return (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "grads")


def _grads_get(container: ast.expr, key: ast.expr) -> ast.expr:
    return ast.Call(ast.Attribute(copy.deepcopy(container), "get", ast.Load()), [copy.deepcopy(key), ast.Constant(0)], [])


# ----- the operators --------------------------------------------------------------------------
@operator("matmul-to-mul", "a @ b (or np.dot/np.matmul/a.dot) -> a * b: element-wise where a matrix product was meant")
def _matmul_to_mul(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        text = _op_gap_swap(info, node, "@", "*")
        if text:
            yield Proposal(node, ast.BinOp(node.left, ast.Mult(), node.right), text)
    elif isinstance(node, ast.Call) and not node.keywords:
        prefix, name = _call_name(node)
        if prefix == "np" and name in ("dot", "matmul") and len(node.args) == 2:
            a, b = node.args
        elif prefix == "<value>" and name == "dot" and len(node.args) == 1:
            a, b = node.func.value, node.args[0]  # type: ignore[attr-defined]
        else:
            return
        yield Proposal(node, ast.BinOp(a, ast.Mult(), b), f"{info.operand(a)} * {info.operand(b)}")


@operator("mul-to-matmul", "a * b -> a @ b: a matrix product where element-wise was meant")
def _mul_to_matmul(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) \
            and not _is_number(node.left) and not _is_number(node.right):
        text = _op_gap_swap(info, node, "*", "@")
        if text:
            yield Proposal(node, ast.BinOp(node.left, ast.MatMult(), node.right), text)


@operator("drop-transpose", "x.T, x.transpose(...), np.transpose(x), x.swapaxes(...) -> x: a forgotten transpose")
def _drop_transpose(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.Attribute) and node.attr == "T" and isinstance(node.ctx, ast.Load):
        yield Proposal(node, node.value, info.seg(node.value))
    elif isinstance(node, ast.Call):
        prefix, name = _call_name(node)
        if prefix == "<value>" and name in ("transpose", "swapaxes"):
            value = node.func.value  # type: ignore[attr-defined]
            yield Proposal(node, value, info.seg(value))
        elif prefix == "np" and name in ("transpose", "swapaxes") and node.args:
            yield Proposal(node, node.args[0], info.seg(node.args[0]))


@operator("swap-axis", "axis=0 -> axis=1 (any other axis -> 0; axis=(0, 2, 3) -> (1, 2, 3) or (2, 3)): the wrong axis")
def _swap_axis(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not isinstance(node, ast.Call):
        return
    kw = _keyword(node, "axis")
    if kw is None:
        return
    v = kw.value
    single = _int_value(v)
    if single is not None:
        new = 1 if single == 0 else 0
        yield Proposal(v, _int_const(new), str(new))
    elif isinstance(v, ast.Tuple) and v.elts and all(_int_value(e) is not None for e in v.elts):
        axes = [_int_value(e) for e in v.elts]
        first = 1 if axes[0] == 0 else 0
        swapped = [first] + axes[1:]  # type: ignore[list-item]
        if len(set(swapped)) == len(swapped):
            yield Proposal(v, ast.Tuple([_int_const(a) for a in swapped], ast.Load()),  # type: ignore[arg-type]
                           _tuple_text(swapped))
        if len(axes) > 1:
            rest = axes[1:]
            yield Proposal(v, ast.Tuple([_int_const(a) for a in rest], ast.Load()),  # type: ignore[arg-type]
                           _tuple_text(rest), tag="drop", detail=f"drops axis {axes[0]}")  # type: ignore[arg-type]


def _tuple_text(axes: Sequence[int]) -> str:
    return f"({axes[0]},)" if len(axes) == 1 else "(" + ", ".join(str(a) for a in axes) + ")"


def _rename_call(node: ast.Call, info: SiteInfo, old: str, new: str) -> Iterator[Proposal]:
    prefix, name = _call_name(node)
    if name != old or prefix not in ("np", "<value>"):
        return
    func = node.func
    assert isinstance(func, ast.Attribute)
    text = info.seg(node)
    func_text = info.seg(func)
    if not func_text.endswith(old) or not text.startswith(func_text):
        return
    new_node = ast.Call(ast.Attribute(func.value, new, ast.Load()), node.args, node.keywords)
    yield Proposal(node, new_node, func_text[: -len(old)] + new + text[len(func_text):])


@operator("sum-to-mean", "x.sum(...) / np.sum(...) -> .mean(...): a mean where the loss sums")
def _sum_to_mean(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.Call):
        yield from _rename_call(node, info, "sum", "mean")


@operator("mean-to-sum", "x.mean(...) / np.mean(...) -> .sum(...): a sum where a mean is due")
def _mean_to_sum(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.Call):
        yield from _rename_call(node, info, "mean", "sum")


@operator("drop-keepdims", "a reduction's keepdims=True dropped: (n, 1) becomes (n,) and broadcasts along the wrong axis")
def _drop_keepdims(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not isinstance(node, ast.Call):
        return
    kw = _keyword(node, "keepdims")
    if kw is None or not (isinstance(kw.value, ast.Constant) and kw.value.value is True):
        return
    new = ast.Call(node.func, node.args, [k for k in node.keywords if k is not kw])
    items = list(node.args) + list(node.keywords)
    i = items.index(kw)
    text = info.seg(node)
    kw_start = len(_span_text(info, node, kw, upto_start=True))
    kw_end = len(_span_text(info, node, kw))
    if i > 0:
        prev_end = len(_span_text(info, node, items[i - 1]))
        text = text[:prev_end] + text[kw_end:]
    elif len(items) > 1:
        nxt = len(_span_text(info, node, items[1], upto_start=True))
        text = text[:kw_start] + text[nxt:]
    else:
        text = text[:kw_start] + text[kw_end:]
    yield Proposal(node, new, text)


@operator("add-keepdims", "keepdims=True added to a reduction over an axis: (n,) becomes (n, 1)")
def _add_keepdims(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not isinstance(node, ast.Call):
        return
    prefix, name = _call_name(node)
    if name not in REDUCTIONS or prefix not in ("np", "<value>"):
        return
    if _keyword(node, "axis") is None or _keyword(node, "keepdims") is not None:
        return
    new = ast.Call(node.func, node.args, list(node.keywords) + [ast.keyword("keepdims", ast.Constant(True))])
    items = list(node.args) + list(node.keywords)
    text = info.seg(node)
    end = len(_span_text(info, node, items[-1]))
    yield Proposal(node, new, text[:end] + ", keepdims=True" + text[end:])


@operator("first-sample-only", "x.sum(axis=0) -> x[0] (axis=(0, 2, 3) -> x[0].sum(axis=(1, 2))): only the first sample")
def _first_sample(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not isinstance(node, ast.Call):
        return
    prefix, name = _call_name(node)
    if name != "sum":
        return
    if prefix == "<value>" and not node.args:
        value = node.func.value  # type: ignore[attr-defined]
    elif prefix == "np" and len(node.args) == 1:
        value = node.args[0]
    else:
        return
    kw = _keyword(node, "axis")
    keep = _keyword(node, "keepdims")
    if kw is None or any(k.arg not in ("axis", "keepdims") for k in node.keywords):
        return
    keepdims = keep is not None and isinstance(keep.value, ast.Constant) and keep.value.value is True
    single = _int_value(kw.value)
    if single is not None:
        axes = [single]
    elif isinstance(kw.value, ast.Tuple) and all(_int_value(e) is not None for e in kw.value.elts):
        axes = [_int_value(e) for e in kw.value.elts]  # type: ignore[misc]
    else:
        return
    if 0 not in axes:
        return
    index: ast.expr = ast.Slice(None, ast.Constant(1), None) if keepdims else ast.Constant(0)
    sub = ast.Subscript(value, index, ast.Load())
    base = info.operand(value) + ("[:1]" if keepdims else "[0]")
    rest = [a for a in axes if a != 0]
    if not rest:
        yield Proposal(node, sub, base)
        return
    shifted = rest if keepdims else [a - 1 if a > 0 else a for a in rest]
    axis_node = _int_const(shifted[0]) if len(shifted) == 1 else ast.Tuple([_int_const(a) for a in shifted], ast.Load())
    kws = [ast.keyword("axis", axis_node)] + ([ast.keyword("keepdims", ast.Constant(True))] if keepdims else [])
    new = ast.Call(ast.Attribute(sub, "sum", ast.Load()), [], kws)
    axis_text = str(shifted[0]) if len(shifted) == 1 else _tuple_text(shifted)
    yield Proposal(node, new, f"{base}.sum(axis={axis_text}" + (", keepdims=True)" if keepdims else ")"))


@operator("drop-term", "a + b -> a, a - b -> a: a forgotten term (the bias, a mean or a cross term)")
def _drop_term(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        yield Proposal(node, node.left, info.seg(node.left))


@operator("drop-negation", "-x -> x: a lost minus sign")
def _drop_negation(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and not _is_number(node):
        yield Proposal(node, node.operand, info.operand(node.operand))


@operator("sub-to-add", "a - b -> a + b (and -= -> +=): a flipped sign")
def _sub_to_add(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
        text = _op_gap_swap(info, node, "-", "+")
        if text:
            yield Proposal(node, ast.BinOp(node.left, ast.Add(), node.right), text)
    elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Sub):
        text = _op_gap_swap(info, node, "-=", "+=")
        if text:
            yield Proposal(node, ast.AugAssign(node.target, ast.Add(), node.value), text)


@operator("drop-factor", "2 * x -> x, x / n -> x: a dropped constant factor or normalization")
def _drop_factor(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not isinstance(node, ast.BinOp):
        return
    if isinstance(node.op, ast.Mult):
        if _is_number(node.left) and not _is_number(node.right):
            yield Proposal(node, node.right, info.seg(node.right))
        elif _is_number(node.right) and not _is_number(node.left):
            yield Proposal(node, node.left, info.seg(node.left))
    elif isinstance(node.op, ast.Div) and not _is_number(node.left):
        yield Proposal(node, node.left, info.seg(node.left))


@operator("add-at-to-index", "np.add.at(a, idx, v) -> a[idx] += v: repeated indices keep one update instead of all")
def _add_at(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return
    call = node.value
    f = call.func
    if not (isinstance(f, ast.Attribute) and f.attr == "at" and isinstance(f.value, ast.Attribute)
            and f.value.attr == "add" and len(call.args) == 3 and not call.keywords):
        return
    a, idx, v = call.args
    target = ast.Subscript(a, idx, ast.Store())
    yield Proposal(node, ast.AugAssign(target, ast.Add(), v), f"{info.seg(a)}[{info.seg(idx)}] += {info.seg(v)}")


@operator("assign-to-accumulate", "self.grads[k] = g -> self.grads[k] += g (from 0): gradients accumulate across calls")
def _accumulate(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and _is_grads_subscript(node.targets[0]):
        t = node.targets[0]
        assert isinstance(t, ast.Subscript)
        value = ast.BinOp(_grads_get(t.value, t.slice), ast.Add(), node.value)
        text = f"{info.seg(t)} = {info.seg(t.value)}.get({info.seg(t.slice)}, 0) + {_add_operand(info, node.value)}"
        yield Proposal(node, ast.Assign([t], value), text)
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        call = node.value
        f = call.func
        if not (isinstance(f, ast.Attribute) and f.attr == "update" and isinstance(f.value, ast.Attribute)
                and f.value.attr == "grads" and not call.args):
            return
        for i, kw in enumerate(call.keywords):
            if kw.arg is None:
                continue
            new_kw = ast.keyword(kw.arg, ast.BinOp(_grads_get(f.value, ast.Constant(kw.arg)), ast.Add(), kw.value))
            keywords = list(call.keywords)
            keywords[i] = new_kw
            text = f"{kw.arg}={info.seg(f.value)}.get({kw.arg!r}, 0) + {_add_operand(info, kw.value)}"
            yield Proposal(kw, new_kw, text, tag=kw.arg if len(call.keywords) > 1 else "")


def _add_operand(info: SiteInfo, node: ast.AST) -> str:
    text = info.seg(node)
    if isinstance(node, (ast.Lambda, ast.IfExp, ast.BoolOp, ast.Compare, ast.NamedExpr)):
        return f"({text})"
    return text


@operator("swap-cached", "a, b = self.cache -> b, a: two cached arrays of the same shape swapped")
def _swap_cached(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple)):
        return
    if isinstance(node.value, (ast.Tuple, ast.List)):
        return  # a, b = x @ W, b: several new values, not a cache being unpacked
    target = node.targets[0]
    sigs = info.signatures.get((node.lineno, node.col_offset))
    if not sigs or len(sigs) != len(target.elts):
        return
    names = [(i, e) for i, e in enumerate(target.elts) if isinstance(e, ast.Name) and not e.id.startswith("_")]
    for (i, a), (j, b) in itertools.combinations(names, 2):
        if sigs[i] is None or sigs[i] != sigs[j]:
            continue
        elts = list(target.elts)
        elts[i], elts[j] = elts[j], elts[i]
        text = info.seg(target)
        # replace the later name first so the earlier offsets stay valid
        a_start = len(_span_text(info, target, a, upto_start=True))
        b_start = len(_span_text(info, target, b, upto_start=True))
        text = text[:b_start] + a.id + text[b_start + len(b.id):]
        text = text[:a_start] + b.id + text[a_start + len(a.id):]
        yield Proposal(target, ast.Tuple(elts, ast.Store()), text, tag=f"{a.id}-{b.id}",
                       detail=f"{a.id} <-> {b.id}")


@operator("write-dout", f"dout *= {DOUT_WRITE_FACTOR} inserted at the end of backward: an in-place write into the caller's dout")
def _write_dout(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    fn = info.function
    if fn is None or info.method != "backward" or len(fn.args.args) < 2:
        return
    dout = fn.args.args[1].arg
    write = ast.AugAssign(ast.Name(dout, ast.Store()), ast.Mult(), ast.Constant(DOUT_WRITE_FACTOR))
    if isinstance(node, ast.Return) and node.value is not None and _is_last_return(fn, node):
        keep = ast.Assign([ast.Name(RETURN_TEMP, ast.Store())], node.value)
        new = [keep, write, ast.Return(ast.Name(RETURN_TEMP, ast.Load()))]
        text = f"{RETURN_TEMP} = {info.seg(node.value)}; {dout} *= {DOUT_WRITE_FACTOR}; return {RETURN_TEMP}"
        yield Proposal(node, new, text)
    elif (node is fn.body[-1] and isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign))
          and not any(isinstance(n, ast.Return) for n in ast.walk(fn))):
        # a backward without a return (an index input): write after its last statement
        yield Proposal(node, [node, write], f"{info.seg(node)}; {dout} *= {DOUT_WRITE_FACTOR}")


def _is_last_return(fn: ast.FunctionDef, node: ast.Return) -> bool:
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
    return bool(returns) and returns[-1] is node and fn.body[-1] is node


@operator("einsum-transpose", "np.einsum('...->dk', ...) -> '...->kd': the result's last two axes transposed")
def _einsum_transpose(node: ast.AST, info: SiteInfo) -> Iterator[Proposal]:
    if not isinstance(node, ast.Call):
        return
    prefix, name = _call_name(node)
    if prefix != "np" or name != "einsum" or not node.args:
        return
    spec = node.args[0]
    if not (isinstance(spec, ast.Constant) and isinstance(spec.value, str) and "->" in spec.value):
        return
    lhs, out = spec.value.split("->", 1)
    out_s = out.strip()
    if len(out_s) < 2 or not out_s.isalpha():
        return
    new_out = out_s[:-2] + out_s[-1] + out_s[-2]
    new_spec = f"{lhs}->{new_out}"
    yield Proposal(spec, ast.Constant(new_spec), repr(new_spec))


# ----- finding the sites ----------------------------------------------------------------------
@dataclass(frozen=True)
class SourceEdit:
    """One site rewritten: where (in the parsed source's own coordinates), what it becomes, and the result."""

    operator: str
    tag: str
    detail: str
    lineno: int
    col: int          # character column, 0-based
    end_lineno: int
    end_col: int
    original: str     # the original source lines the edit touches
    mutated: str      # the same lines after the edit
    replacement: str  # the text that replaced the site
    source: str       # the whole mutated class/function source


def _children_to_walk(node: ast.AST) -> Iterator[tuple[str, Any]]:
    for name, value in ast.iter_fields(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and name in ("decorator_list", "returns", "args"):
            if name == "args":
                # defaults are code; annotations are not
                yield "args", node.args
            continue
        if isinstance(node, ast.arguments) and name not in ("defaults", "kw_defaults"):
            continue
        if isinstance(node, ast.AnnAssign) and name == "annotation":
            continue
        if isinstance(node, ast.ClassDef) and name in ("decorator_list", "bases", "keywords"):
            continue
        yield name, value


def _walk(node: ast.AST, path: tuple[Any, ...], out: list[tuple[tuple[Any, ...], ast.AST]]) -> None:
    out.append((path, node))
    for name, value in _children_to_walk(node):
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    _walk(item, path + ((name, i),), out)
        elif isinstance(value, ast.AST):
            _walk(value, path + ((name, None),), out)


def _docstring_node(fn: ast.AST) -> ast.AST | None:
    body = getattr(fn, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0]
    return None


def mutable_functions(tree: ast.Module, include_init: bool) -> list[tuple[tuple[Any, ...], ast.FunctionDef]]:
    """The functions whose bodies are mutated: a class's methods (not __init__ unless asked), or the function."""
    top = tree.body[0]
    if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [((("body", 0),), top)]  # type: ignore[list-item]
    assert isinstance(top, ast.ClassDef)
    out = []
    for i, item in enumerate(top.body):
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if item.name == "__init__" and not include_init:
                continue
            out.append(((("body", 0), ("body", i)), item))
    return out  # type: ignore[return-value]


def _get(tree: ast.AST, path: tuple[Any, ...]) -> Any:
    node: Any = tree
    for name, index in path:
        node = getattr(node, name)
        if index is not None:
            node = node[index]
    return node


def _apply_ast(tree: ast.Module, path: tuple[Any, ...], new: Any) -> ast.Module:
    out = copy.deepcopy(tree)
    *parents, (name, index) = path
    parent = _get(out, tuple(parents))
    new = copy.deepcopy(new)
    if index is None:
        setattr(parent, name, new)
    else:
        seq = getattr(parent, name)
        if isinstance(new, list):
            seq[index : index + 1] = new
        else:
            seq[index] = new
    return out


def _same(a: ast.AST, b: ast.AST) -> bool:
    return ast.dump(a) == ast.dump(b)


def _lines_of(source: str) -> list[str]:
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def find_sites(source: str, operators: Sequence[str] | None = None, *, include_init: bool = False,
               signatures: Mapping[tuple[int, int], Sequence[Any]] | None = None) -> list[SourceEdit]:
    """Every single-site edit the operators propose on `source` (one class or one function), in source order."""
    tree = ast.parse(source)
    lines = _lines_of(source)
    names = list(SOURCE_OPERATORS) if operators is None else [o for o in operators if o in SOURCE_OPERATORS]
    edits: list[SourceEdit] = []
    seen: set[str] = set()
    for _, fn in mutable_functions(tree, include_init):
        info = SiteInfo(source=source, lines=lines, method=fn.name, function=fn, signatures=signatures or {})
        nodes: list[tuple[tuple[Any, ...], ast.AST]] = []
        _walk(fn, (), nodes)
        doc = _docstring_node(fn)
        skip = set() if doc is None else {id(n) for n in ast.walk(doc)}
        paths = {id(n): p for p, n in nodes}
        fn_path = next(p for p, f in mutable_functions(tree, include_init) if f is fn)
        for _, node in nodes:
            if id(node) in skip or node is fn:
                continue
            for op_name in names:
                for prop in SOURCE_OPERATORS[op_name].propose(node, info):
                    edit = _make_edit(tree, lines, fn_path + paths[id(prop.node)], op_name, prop)
                    if edit is None:
                        continue
                    key = f"{op_name}:{edit.lineno}:{edit.col}:{edit.tag}:{edit.replacement}"
                    if key not in seen:
                        seen.add(key)
                        edits.append(edit)
    edits.sort(key=lambda e: (e.lineno, e.col, names.index(e.operator), e.tag))
    return edits


def _make_edit(tree: ast.Module, lines: list[str], path: tuple[Any, ...], op_name: str, prop: Proposal) -> SourceEdit | None:
    node = prop.node
    expected = _apply_ast(tree, path, prop.new)
    if _same(expected, tree):
        return None  # not a change at all
    chosen = None
    for text in (prop.text, f"({prop.text})"):
        new_lines = replace_segment(lines, node, text)
        try:
            parsed = ast.parse("".join(new_lines))
        except SyntaxError:
            continue
        if _same(parsed, expected):
            chosen = text, new_lines
            break
    if chosen is None:
        return None  # an operator's text that does not say what its AST does: never show a wrong diff
    text, new_lines = chosen
    l0, l1 = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
    c0 = _char_col(lines[l0], node.col_offset)  # type: ignore[attr-defined]
    c1 = _char_col(lines[l1], node.end_col_offset)  # type: ignore[attr-defined]
    original = "".join(lines[l0 : l1 + 1]).rstrip("\n")
    mutated = new_lines[l0].rstrip("\n")
    return SourceEdit(op_name, prop.tag, prop.detail, l0 + 1, c0, l1 + 1, c1, original, mutated, text,
                      "".join(new_lines))


def tuple_unpack_sites(source: str, include_init: bool = False) -> list[tuple[int, int, list[str | None]]]:
    """(line, col, element names) of every tuple-unpacking assignment the swap-cached operator may use."""
    tree = ast.parse(source)
    out = []
    for _, fn in mutable_functions(tree, include_init):
        for node in ast.walk(fn):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple)
                    and not isinstance(node.value, (ast.Tuple, ast.List))):
                elts = node.targets[0].elts
                out.append((node.lineno, node.col_offset, [e.id if isinstance(e, ast.Name) else None for e in elts]))
    return out


def instrument_unpacks(source: str, probe_name: str, include_init: bool = False) -> ast.Module:
    """The source's AST with `probe_name((line, col), (a, b, ...))` after every tuple unpacking."""
    tree = ast.parse(source)
    sites = {(ln, col) for ln, col, _ in tuple_unpack_sites(source, include_init)}

    class Inserter(ast.NodeTransformer):
        def generic_visit(self, node: ast.AST) -> ast.AST:
            super().generic_visit(node)
            for name, value in ast.iter_fields(node):
                if isinstance(value, list) and value and all(isinstance(v, ast.stmt) for v in value):
                    new: list[ast.stmt] = []
                    for stmt in value:
                        new.append(stmt)
                        if isinstance(stmt, ast.Assign) and (stmt.lineno, stmt.col_offset) in sites:
                            elts = stmt.targets[0].elts  # type: ignore[attr-defined]
                            vals = [ast.Name(e.id, ast.Load()) if isinstance(e, ast.Name) else ast.Constant(None)
                                    for e in elts]
                            call = ast.Call(ast.Name(probe_name, ast.Load()),
                                            [ast.Tuple([ast.Constant(stmt.lineno), ast.Constant(stmt.col_offset)], ast.Load()),
                                             ast.Tuple(vals, ast.Load())], [])
                            probe = ast.Expr(call)
                            ast.copy_location(probe, stmt)
                            new.append(probe)
                    setattr(node, name, new)
            return node

    tree = Inserter().visit(tree)
    return ast.fix_missing_locations(tree)


def operator_descriptions() -> dict[str, str]:
    return {name: op.description for name, op in SOURCE_OPERATORS.items()}
