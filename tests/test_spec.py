"""Bad arguments give InvalidArgument naming the argument, echoing the value and suggesting a fix."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

import gradharness as gh
from gradharness._spec import parse_shape
from tests import planted

GOOD = planted.linear(None)

BAD_CALLS: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, kwargs, text that names the argument, text of the suggestion)
    ("input-not-str", {"input": 3}, "input=3", "symbolic shape"),
    ("input-bad-token", {"input": "n d-in"}, "input='n d-in'", "neither"),
    ("dims-lo-gt-hi", {"dims": {"d_in": (5, 2)}}, "dims['d_in']=(5, 2)", "Did you mean (2, 5)?"),
    ("dims-negative", {"dims": {"d_in": (-1, 3)}}, "dims['d_in']=(-1, 3)", "sizes >= 0"),
    ("dims-not-mapping", {"dims": [1, 2]}, "dims=[1, 2]", "mapping"),
    ("dims-bad-value", {"dims": {"d_in": "big"}}, "dims['d_in']='big'", "range"),
    ("output-derived-and-drawn", {"output": "n zz", "derived": {"zz": len}, "dims": {"zz": (1, 2)}}, "dims=",
     "only one of dims, hyper and derived"),
    ("domain-lo-ge-hi", {"domain": (3.0, -3.0)}, "domain=(3.0, -3.0)", "Did you mean (-3.0, 3.0)?"),
    ("domain-not-pair", {"domain": (1.0,)}, "domain=(1.0,)", "pair"),
    ("domain-inf", {"domain": (0.0, float("inf"))}, "domain=(0.0, inf)", "finite"),
    ("max-examples-negative", {"max_examples": -1}, "max_examples=-1", "int >= 1"),
    ("max-examples-zero", {"max_examples": 0}, "max_examples=0", "int >= 1"),
    ("seed-float", {"seed": 1.5}, "seed=1.5", "an int"),
    ("unknown-check", {"checks": ("grad-parms",)}, "checks=('grad-parms',)", "Did you mean 'grad-params'?"),
    ("unknown-skip", {"skip": ("nope",)}, "skip=('nope',)", "gradharness list"),
    ("dtype-int", {"dtypes": (np.int32,)}, "dtypes=", "float32 or float64"),
    ("dtype-float16", {"dtypes": (np.float16,)}, "dtypes=", "too little precision"),
    ("dtype-empty", {"dtypes": ()}, "dtypes=()", "non-empty"),
    ("dtype-junk", {"dtypes": ("banana",)}, "dtypes=('banana',)", "not a dtype"),
    ("elementwise-shapes-differ", {"elementwise": True}, "elementwise=True", "output == input"),
    ("elementwise-not-bool", {"elementwise": "yes"}, "elementwise='yes'", "True or False"),
    ("profile", {"profile": "fast"}, "profile='fast'", "dev, ci, thorough"),
    ("unknown-option", {"max_example": 3}, "max_example=3", "Did you mean 'max_examples'?"),
    ("bias-not-param", {"bias": ("bias",)}, "bias=('bias',)", "Pass bias=() for a layer without biases"),
    ("bias-not-names", {"bias": (1,)}, "bias=(1,)", "tuple of parameter names"),
    ("hyper-empty-list", {"hyper": {"k": []}}, "hyper['k']=[]", "non-empty list"),
    ("derived-not-callable", {"derived": {"q": 3}}, "derived={'q': 3}", "callable"),
    ("index-input-unknown", {"index_input": "vocab"}, "index_input='vocab'", "Add it to dims="),
    ("example-junk", {"example": 5}, "example=5", "reproduction line"),
]


@pytest.mark.parametrize(("kwargs", "names", "fix"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_argument(kwargs: dict[str, Any], names: str, fix: str) -> None:
    opts = dict(planted.LINEAR, max_examples=2)
    opts.update(kwargs)
    with pytest.raises(gh.InvalidArgument) as info:
        gh.check_layer(GOOD, **opts)
    text = str(info.value)
    assert names in text
    assert fix in text
    assert "expected" in text


def test_make_must_be_callable() -> None:
    with pytest.raises(gh.InvalidArgument, match=r"make=.*expected a factory"):
        gh.check_layer(planted.Linear(2, 2, np.random.default_rng(0)), "n d_in")  # type: ignore[arg-type]


def test_invalid_argument_is_a_value_error_with_fields() -> None:
    with pytest.raises(ValueError) as info:
        gh.check_layer(GOOD, **planted.LINEAR, max_examples=0)
    assert isinstance(info.value, gh.InvalidArgument)
    assert info.value.name == "max_examples" and info.value.value == 0


def test_parse_shape() -> None:
    assert parse_shape("n c h w", argname="input") == ("n", "c", "h", "w")
    assert parse_shape("", argname="input") == ()
    assert parse_shape("n 3", argname="input") == ("n", 3)


def test_decorator_rejects_unknown_option() -> None:
    with pytest.raises(gh.InvalidArgument, match="Did you mean 'batch_independent'"):
        gh.layer(batch_independant=False)


def test_strategy_dims_are_accepted() -> None:
    report = gh.check_layer(GOOD, **planted.LINEAR, dims={"d_in": st.sampled_from([2, 5])}, max_examples=5, seed=0)
    assert report.passed, report
