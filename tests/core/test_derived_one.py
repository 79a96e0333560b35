"""The one-row form of derived features (`Compiled.one`, `Program.run_one`, which get_feature_vector
uses) computes what the vectorized form (`Compiled.run`, `Program.run`) computes, over random typed
expressions and random rows: nulls, defaults, NaN, infinities, -0.0 and int64 overflow included."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fsplug.derived import ExpressionError, Kind, Program, Step, compile_expression, compile_step
from fsplug.kernel import make_default
from fsplug.types import DType

KINDS = {"i": Kind.INT, "j": Kind.INT, "f": Kind.FLOAT, "g": Kind.FLOAT, "b": Kind.BOOL, "t": Kind.TS,
         "s": Kind.STR}
NP = {Kind.INT: np.int64, Kind.FLOAT: np.float64, Kind.BOOL: np.bool_, Kind.TS: np.int64, Kind.STR: object}
PLACEHOLDER = {Kind.INT: 0, Kind.FLOAT: math.nan, Kind.BOOL: False, Kind.TS: 0, Kind.STR: ""}


def _kind(name: str) -> Kind:
    if name not in KINDS:
        raise ExpressionError(f"unknown input {name!r}")
    return KINDS[name]


INT_CONSTS = st.sampled_from(["0", "1", "-3", "7", "24", "9223372036854775807", "-9223372036854775807"])
FLOAT_CONSTS = st.sampled_from(["0.5", "-2.5", "0.0", "-0.0", "1e308", "3.0"])


def _ints(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(["i", "j", "hour(t)", "minute(t)", "weekday(t)"]), INT_CONSTS)
    if depth == 0:
        return leaf
    sub, fl = _ints(depth - 1), _floats(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "//", "%"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["abs", "-"]), sub).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["round", "int"]), fl).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(sub, _flags(depth - 1), sub).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    )


def _floats(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(["f", "g", "(t - t)"]), FLOAT_CONSTS)
    if depth == 0:
        return leaf
    sub = st.one_of(_floats(depth - 1), _ints(depth - 1))
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), sub).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["abs", "sqrt", "float", "-", "log", "exp"]), sub).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(sub, sub, sub).map(lambda t: f"clip({t[0]}, {t[1]}, {t[2]})"),
        st.tuples(sub, _flags(depth - 1), sub).map(lambda t: f"where({t[1]}, {t[0]}, {t[2]})"),
    )


def _flags(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(["b", "is_null(f)", "is_null(i)", "s == 'x'", "s != ''", "True"])
    if depth == 0:
        return leaf
    sub, num = _flags(depth - 1), st.one_of(_ints(depth - 1), _floats(depth - 1))
    return st.one_of(
        leaf,
        st.tuples(num, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), num).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(num, num, num).map(lambda t: f"({t[0]} <= {t[1]} < {t[2]})"),
        st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda x: f"(not {x})"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]} == {t[1]})"),
        _floats(depth - 1).map(lambda x: f"is_null({x})"),
    )


EXPRESSIONS = st.one_of(
    st.tuples(_ints(2), st.just("int64")),
    st.tuples(_floats(2), st.just("float64")),
    st.tuples(_ints(2), st.just("float64")),
    st.tuples(_flags(2), st.just("bool")),
)

VALUES = {
    Kind.INT: st.one_of(st.integers(-100, 100), st.integers(-(2**63), 2**63 - 1),
                        st.sampled_from([-(2**63), 2**63 - 1, 0, -1])),
    Kind.FLOAT: st.one_of(st.floats(-1e6, 1e6), st.floats(allow_nan=True, allow_infinity=True),
                          st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e308, 0.5, -2.5])),
    Kind.BOOL: st.booleans(),
    Kind.TS: st.integers(-(10**17), 10**17),
    Kind.STR: st.sampled_from(["", "x", "é"]),
}


def _rows(n: int) -> st.SearchStrategy[dict[str, list]]:
    """n rows: per input, n values, None for a null."""
    return st.fixed_dictionaries({name: st.lists(st.one_of(st.none(), VALUES[k]), min_size=n, max_size=n)
                                  for name, k in KINDS.items()})


def _column(kind: Kind, values: list) -> tuple[np.ndarray, np.ndarray | None]:
    """As derived features get inputs: a placeholder where null, and the null mask (None: no nulls)."""
    null = np.array([v is None for v in values], dtype=bool)
    arr = np.array([PLACEHOLDER[kind] if v is None else v for v in values], dtype=NP[kind])
    return arr, (null if null.any() else None)


def _same(one, vec_value, vec_null) -> bool:
    if vec_null:
        return one is None
    if one is None:
        return False
    return type(one) in (int, float, bool) and one == vec_value.item() and (
        not isinstance(one, float) or math.copysign(1, one) == math.copysign(1, vec_value.item())
        or one != 0)


def _compiled(text: str, dtype: str):
    """The expression compiled, or the example dropped when it is refused (a constant division by zero
    or the like: refused at apply anyway)."""
    try:
        return compile_expression(text, _kind, DType(dtype))
    except ExpressionError:
        assume(False)


@settings(max_examples=400, deadline=None)
@given(expr=EXPRESSIONS, data=st.data())
def test_one_row_form_equals_the_vectorized_form(expr, data):
    text, dtype = expr
    c = _compiled(text, dtype)
    uses_numpy_only = any(fn in text for fn in ("log(", "exp(", "**"))
    if c.one is None:  # only for functions computed by numpy alone (folded constants have one anyway)
        assert uses_numpy_only, text
        return
    n = data.draw(st.integers(1, 6))
    rows = data.draw(_rows(n))
    columns = [_column(KINDS[a], rows[a]) for a in c.args]
    with np.errstate(all="ignore"):
        values, null = c.run(columns, n)
    for r in range(n):
        env = [rows[a][r] for a in c.args]
        try:
            got = c.one(env)
        except Exception as exc:  # only an int out of int64's range may stop it (the numpy form then answers)
            assert type(exc).__name__ == "_NoScalar", (text, env, exc)
            continue
        is_null = null is not None and bool(null[r])
        assert _same(got, values[r], is_null), (text, env, got, None if is_null else values[r].item())


@settings(max_examples=100, deadline=None)
@given(chained=st.sampled_from(["d * 2 if flag else -d", "coalesce(d, 5.0) + i", "where(is_null(d), 1.0, d)"]),
       d_default=st.sampled_from([None, 0.25]), flag_default=st.sampled_from([None, True]),
       rows=_rows(5))
def test_a_program_reading_its_own_steps_and_defaults_runs_the_same_for_one_row(chained, d_default,
                                                                                 flag_default, rows):
    dtypes = {"f": DType.FLOAT64, "i": DType.INT64, "b": DType.BOOL}
    defs = [("d", DType.FLOAT64, "f / i", d_default), ("flag", DType.BOOL, "b and d > 1", flag_default),
            ("out", DType.FLOAT64, chained, None)]
    slots = {"f": 0, "i": 1, "b": 2}
    steps = []
    for name, dtype, expr, default in defs:
        compiled, used = compile_step(name, dtype, expr, None, slots, dtypes)
        steps.append(Step(name, len(steps), make_default(dtype, default), compiled, used))
        slots[name], dtypes[name] = 3 + len(steps) - 1, dtype
    prog = Program(tuple(steps), 3, tuple(dtypes.values()))
    assert prog.has_one
    inputs = {k: _column(KINDS[name], rows[name]) for name, k in (("f", 0), ("i", 1), ("b", 2))}
    with np.errstate(all="ignore"):
        vec = prog.run(inputs, 5)
    for r in range(5):
        one = prog.run_one({k: rows[name][r] for name, k in (("f", 0), ("i", 1), ("b", 2))})
        assert one is not None
        for si, (values, null) in enumerate(vec):
            is_null = null is not None and bool(null[r])
            assert _same(one[si], values[r], is_null), (chained, r, si, one[si], values[r])


def test_udfs_and_numpy_only_functions_have_no_one_row_form():
    assert compile_expression("log(f) + 1", _kind, DType.FLOAT64).one is None
    assert compile_expression("day(t)", _kind, DType.INT64).one is None
    assert compile_expression("f ** 2", _kind, DType.FLOAT64).one is None
    assert compile_expression("sqrt(f) + hour(t)", _kind, DType.FLOAT64).one is not None


@pytest.mark.parametrize("expr, dtype, env, want", [
    ("i + j", "int64", [2**63 - 1, 1], -(2**63)),  # int64 wraps around, as numpy's
    ("-i", "int64", [-(2**63)], -(2**63)),
    ("max(f, g)", "float64", [math.nan, 1.0], None),  # NaN wins in numpy's max, and NaN is null
    ("min(f, g)", "float64", [1.0, math.nan], None),
    ("f / i", "float64", [1.0, 0], None),  # division by zero: null
    ("i / j", "float64", [2**62 + 1, 3], float(2**62) / 3.0),  # as two float64s, like numpy
    ("round(f)", "int64", [2.5], 2),
    # a float outside int64 has no int, like NaN and inf: null (its numpy cast served -2**63 on x86)
    ("round(f)", "int64", [1e308], None),
    ("int(f)", "int64", [-1e19], None),
    ("int(f)", "int64", [9.3e18], None),
    ("int(f)", "int64", [-9223372036854775808.0], -(2**63)),
    ("round(f)", "int64", [9223372036854774784.0], 9223372036854774784),  # the largest float below 2**63
    ("coalesce(f, g)", "float64", [math.nan, 3.0], 3.0),  # coalesce sees NaN as null
])
def test_one_row_edge_cases(expr, dtype, env, want):
    c = compile_expression(expr, _kind, DType(dtype))
    assert c.one is not None
    assert c.one(env) == want
    cols = [(np.array([v], dtype=NP[KINDS[a]]), None) for a, v in zip(c.args, env, strict=True)]
    with np.errstate(all="ignore"):
        values, null = c.run(cols, 1)
    assert (None if null is not None and null[0] else values[0].item()) == want


RANGES = ["i >= 7 and i < 10", "7 <= i < 10", "i > 6 and i <= 9 and i != 8", "i >= 21 or i < 6",
          "i < 6 or i >= 21", "i <= 5 or 20 < i", "(i >= 7 and i < 10) or (i >= 16 and i < 19)",
          "i >= -9223372036854775807 and i < 0", "i < 9223372036854775807 and i > 3", "i >= 3 and i >= 5",
          "i < 3 or i >= 3", "i >= 10 and i < 7", "i >= 7 and j < 10", "not (i >= 7 and i < 10)",
          "i == 7 or i == 9 or i == 22", "i != 8 and i != -9223372036854775807 - 1", "not i < 6 and not i >= 21",
          "i == 9223372036854775807 or i == -9223372036854775807 - 1", "(i < 6 or i >= 21) and not i == 3"]
EDGE_INTS = [-(2**63), -(2**63) + 1, -1, 0, 3, 5, 6, 7, 8, 9, 10, 16, 18, 19, 20, 21, 22, 2**63 - 2, 2**63 - 1]


@pytest.mark.parametrize("expr", RANGES)
def test_range_tests_of_one_int_input_are_the_comparisons(expr):
    """Two comparisons of one int input with constants run as one range test: the same values as the
    comparisons (Python's, exact for ints), null where the input is, at int64's edges too."""
    c = compile_expression(expr, _kind, DType.BOOL)
    n = len(EDGE_INTS) + 1
    rows = {"i": EDGE_INTS + [None], "j": list(reversed(EDGE_INTS)) + [4]}
    values, null = c.run([_column(Kind.INT, rows[a]) for a in c.args], n)
    for r in range(n):
        env = {a: rows[a][r] for a in c.args}
        want = None if None in env.values() else eval(expr, {}, env)  # noqa: S307 - the test's own text
        got = None if null is not None and null[r] else bool(values[r])
        assert got == want, (expr, env, got, want)
        assert c.one([rows[a][r] for a in c.args]) == want


def _tests_of_i(depth: int) -> st.SearchStrategy[str]:
    const = st.sampled_from([str(v) for v in EDGE_INTS[1:]] + ["-9223372036854775807 - 1"])
    leaf = st.tuples(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), const).map(lambda t: f"(i {t[0]} {t[1]})")
    if depth == 0:
        return leaf
    sub = _tests_of_i(depth - 1)
    return st.one_of(leaf, sub.map(lambda x: f"(not {x})"),
                     st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"))


@settings(max_examples=300, deadline=None)
@given(_tests_of_i(3))
def test_any_and_or_not_of_tests_of_one_int_input_is_the_comparisons(expr):
    """Any and/or/not of comparisons of one int input with constants runs as one table lookup: the
    same values as Python's comparisons, null where the input is, at int64's edges too."""
    c = compile_expression(expr, _kind, DType.BOOL)
    rows = EDGE_INTS + [None]
    values, null = c.run([_column(Kind.INT, rows)], len(rows))
    for r, x in enumerate(rows):
        want = None if x is None else eval(expr, {}, {"i": x})  # noqa: S307 - the test's own text
        got = None if null is not None and null[r] else bool(values[r])
        assert got == want, (expr, x, got, want)
        assert c.one([x]) == want


EDGES = {Kind.INT: [-(2**63), 2**63 - 1, 0, -1, 3], Kind.FLOAT: [1e308, -1e308, math.inf, -math.inf, math.nan, 0.0,
                                                                 -0.0, 5e-324, 0.5]}


def _edge_rows(n: int) -> st.SearchStrategy[dict[str, list]]:
    """n rows of the values where numpy warns if anything does (overflow, inf - inf, 0 * inf, x / 0)."""
    return st.fixed_dictionaries({name: st.lists(st.one_of(st.none(), st.sampled_from(EDGES[k]) if k in EDGES
                                                           else VALUES[k]), min_size=n, max_size=n)
                                  for name, k in KINDS.items()})


Branches = Callable[[st.SearchStrategy[str]], list[st.SearchStrategy[str]]]
"""Given the sub-expressions' strategy, the strategies of one level's operations."""


def _nested(depth: int, branches: Branches) -> st.SearchStrategy[str]:
    """Expressions over the inputs i, j, f, g and constants, `depth` levels of `branches(sub)` deep."""
    leaf = st.one_of(st.sampled_from(["i", "j", "f", "g"]), INT_CONSTS, FLOAT_CONSTS)
    if depth == 0:
        return leaf
    return st.one_of(leaf, *branches(_nested(depth - 1, branches)))


def _quiet_branches(sub: st.SearchStrategy[str]) -> list[st.SearchStrategy[str]]:
    """The operations that may be quiet (and some that are not)."""
    return [
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["abs", "-"]), sub).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(sub, sub, sub).map(lambda t: f"({t[0]} if {t[1]} > {t[2]} else {t[1]})"),
    ]


def _numbers_of_quiet_ops(depth: int) -> st.SearchStrategy[str]:
    """Numeric expressions of the operations that may be quiet (and of some that are not)."""
    return _nested(depth, _quiet_branches)


_QUIET_TOPS = st.tuples(_numbers_of_quiet_ops(1), st.sampled_from(["+", "-", "*", "/"]), _numbers_of_quiet_ops(2))
QUIETISH = st.one_of(EXPRESSIONS, _QUIET_TOPS.map(lambda t: (f"{t[0]} {t[1]} {t[2]}", "float64")),
                     _QUIET_TOPS.map(lambda t: (f"max({t[0]}, {t[2]}) {t[1]} {t[2]} >= 1", "bool")))


@settings(max_examples=400, deadline=None)
@given(expr=QUIETISH, data=st.data())
def test_an_expression_said_quiet_raises_no_floating_point_warning(expr, data):
    """`Compiled.quiet` lets Program.run skip np.errstate: no input may then make numpy warn."""
    c = _compiled(*expr)
    if not c.quiet:
        return
    n = data.draw(st.integers(1, 8))
    rows = data.draw(st.one_of(_rows(n), _edge_rows(n)))
    columns = [_column(KINDS[a], rows[a]) for a in c.args]
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        c.run(columns, n)


@pytest.mark.parametrize(("expr", "dtype", "quiet"), [
    ("(i >= 7 and i < 10) or (i >= 16 and i < 19)", "bool", True), ("j / max(f, 0.5)", "float64", True),
    ("i / j", "float64", True), ("i * 3 - abs(j)", "int64", True), ("coalesce(f, 1.0) > g", "bool", True),
    ("f * 2", "float64", False), ("i / f", "float64", False), ("i / max(f, 1e-320)", "float64", False),
    ("log(f) > 0", "bool", False), ("int(f) > 0", "bool", False)])
def test_which_expressions_are_quiet(expr, dtype, quiet):
    assert compile_expression(expr, _kind, DType(dtype)).quiet is quiet


def test_folded_constants_are_plain_python_values_in_the_one_row_form():
    for expr, dtype in (("-((0 + 0))", "int64"), ("-(2 * 3) + i", "int64"), ("-(0.5 * 2)", "float64")):
        c = compile_expression(expr, _kind, DType(dtype))
        got = c.one([4] if c.args else [])
        assert type(got) in (int, float), (expr, got, type(got))


# ---- the float form (`Compiled.floats`, `Program.put_floats`: to_numpy's) --------------------------

def _image(kind: Kind, values: list) -> np.ndarray:
    """An input as `to_numpy`'s matrix holds it: float64 (an int as numpy converts it), NaN where null."""
    return np.array([math.nan if v is None else float(np.float64(v)) if kind is Kind.INT else v for v in values],
                    dtype=np.float64)


def _float_branches(sub: st.SearchStrategy[str]) -> list[st.SearchStrategy[str]]:
    """The operations with a float form (and some without one)."""
    return [
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "//", "%"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(sub, st.sampled_from(["/", "//", "%"]), st.sampled_from(["max(f, 0.5)", "max(g, 3)", "2", "0.25",
                                                                          "clip(j, 1, 9)", "min(3.5, max(f, 1))"])
                  ).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["min", "max"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["abs", "-", "float"]), sub).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(sub, sub, sub).map(lambda t: f"clip({t[0]}, {t[1]}, {t[2]})"),
    ]


def _float_ops(depth: int) -> st.SearchStrategy[str]:
    """Numeric expressions of the operations with a float form, and of some without one."""
    return _nested(depth, _float_branches)


@settings(max_examples=400, deadline=None)
@given(text=_float_ops(3), data=st.data())
def test_the_float_form_computes_what_the_vectorized_form_computes(text, data):
    """`Compiled.floats` on the inputs' float images (NaN where null) gives the values of `run`, NaN
    exactly where `run` is null: nulls, NaN, infinities, -0.0 and ints beyond 2**53 included. An
    expression said quiet stays quiet."""
    c = _compiled(text, "float64")
    if c.floats is None:
        return
    n = data.draw(st.integers(1, 8))
    rows = data.draw(st.one_of(_rows(n), _edge_rows(n)))
    with np.errstate(all="ignore"):
        values, null = c.run([_column(KINDS[a], rows[a]) for a in c.args], n)
    images = [(_image(KINDS[a], rows[a]), None) for a in c.args]
    with warnings.catch_warnings(), np.errstate(all="raise" if c.quiet else "ignore"):
        warnings.simplefilter("error")
        got, got_null = c.floats(images)
    assert got_null is None
    got = np.broadcast_to(got, (n,))
    for r in range(n):
        if null is not None and null[r]:
            assert math.isnan(got[r]), (text, r, got[r])
        else:
            assert _same(values[r].item(), got[r], False), (text, r, values[r], got[r])


def test_which_expressions_have_a_float_form():
    have = ["trips / max(hours, 0.5)", "f + i * 2.5", "max(f, g) - 1", "clip(f, 0, 1)", "abs(f)", "float(i)",
            "i / 4", "-f", "f // 2", "f % 0.5", "i", "f * i / max(g, 1) + 1"]
    have_not = ["i + 1", "i * 2 / 3.5", "f / g", "f / i", "log(f)", "coalesce(f, 1.0)", "f if f > 1 else g",
                "round(f) / 2", "f ** 2", "sqrt(f)", "(t - t) / 2", "abs(i) / 2"]
    kinds = {**KINDS, "trips": Kind.INT, "hours": Kind.FLOAT}
    for text in have + have_not:
        c = compile_expression(text, kinds.__getitem__, DType.FLOAT64)
        assert (c.floats is not None) is (text in have), text
    assert compile_expression("i >= 7 and i < 10", _kind, DType.BOOL).bound == (0, ((7, 10),))
    assert compile_expression("f >= 7", _kind, DType.BOOL).bound is None


SMALL_INTS = [-(2**53) + 1, -5, 0, 3, 6, 7, 10, 16, 19, 21, 24, 2**53 - 2]  # (edges within +-2**53)
INT_EDGES = [-(2**63), -(2**63) + 1, -(2**53) - 1, -(2**53), -(2**53) + 1, -1, 0, 5, 6, 7, 9, 10, 18, 19, 20, 21, 22,
             2**53 - 1, 2**53, 2**53 + 1, 2**63 - 2, 2**63 - 1]


def _tests_of(name: str, depth: int) -> st.SearchStrategy[str]:
    leaf = st.tuples(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.sampled_from(SMALL_INTS)).map(
        lambda t: f"({name} {t[0]} {t[1]})")
    if depth == 0:
        return leaf
    sub = _tests_of(name, depth - 1)
    return st.one_of(leaf, sub.map(lambda x: f"(not {x})"),
                     st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"))


FLOAT_INPUTS = {"i": DType.INT64, "j": DType.INT64, "f": DType.FLOAT64, "g": DType.FLOAT64}


def _float_program(tests, data, float32: bool = False):
    """A program of tests of int inputs and a float step that `Program.put_floats` computes (outputs side
    by side or apart, in any order; `float32`: the float step's output may be declared float32), and
    n random rows of its inputs (None: null; ints at int64's and float64's edges)."""
    defs = [(f"t{k}", DType.BOOL, data.draw(_tests_of(name, depth)), data.draw(st.sampled_from([None, True, False])))
            for k, (name, depth) in enumerate(tests)]
    defs.append(("q", DType.FLOAT64, data.draw(st.sampled_from(["i / max(f, 0.5)", "f * 2 + j", "max(g, f) - i"])),
                 data.draw(st.sampled_from([None, 0.25]))))
    slots = {name: k for k, name in enumerate(FLOAT_INPUTS)}
    width = len(FLOAT_INPUTS) + len(defs) + 2
    outputs = data.draw(st.permutations(range(len(FLOAT_INPUTS), width)))
    out_dtypes = [DType.FLOAT64] * width
    if float32 and data.draw(st.booleans(), label="q declared float32"):
        out_dtypes[outputs[len(defs) - 1]] = DType.FLOAT32
    steps = []
    for k, (name, dtype, expr, default) in enumerate(defs):
        compiled, used = compile_step(name, dtype, expr, None, slots, FLOAT_INPUTS)
        steps.append(Step(name, outputs[k], make_default(dtype, default), compiled, used))
    prog = Program(tuple(steps), len(FLOAT_INPUTS), tuple(out_dtypes), tuple(FLOAT_INPUTS.values()))
    assert prog.floats
    n = data.draw(st.integers(1, 8))
    rows = {name: data.draw(st.lists(st.one_of(st.none(), st.sampled_from(INT_EDGES) if name in "ij"
                                               else VALUES[Kind.FLOAT]), min_size=n, max_size=n))
            for name in FLOAT_INPUTS}
    return prog, slots, width, rows, n


def _run(prog, slots, rows, n):
    with np.errstate(all="ignore"):
        return prog.run({k: _column(KINDS[name], rows[name]) for name, k in slots.items()}, n)


@settings(max_examples=200, deadline=None)
@given(tests=st.lists(st.tuples(st.sampled_from(["i", "j"]), st.integers(0, 2)), min_size=1, max_size=4),
       data=st.data())
def test_a_program_put_from_float_images_is_put_numbers_of_its_run(tests, data):
    """`Program.put_floats` (every test of one int input as one lookup, float steps from the matrix's
    columns) writes what `put_numbers` writes of `Program.run`'s columns with defaults: nulls as the
    step's default (NaN without one), output columns side by side or apart, in any order, ints at
    int64's and float64's edges included; `float_nulls` gives `run`'s null masks."""
    prog, slots, width, rows, n = _float_program(tests, data)
    computed = _run(prog, slots, rows, n)
    base = len(FLOAT_INPUTS)
    want = np.zeros((n, width))
    for p, si in prog.outputs:
        prog.put_numbers(want, p, si, computed[si], True)
    got = np.zeros((n, width))
    for name, k in slots.items():
        got[:, k] = _image(KINDS[name], rows[name])
    kept = prog.put_floats(got, lambda k: got[:, k])
    np.testing.assert_array_equal(got[:, base:], want[:, base:])
    for (_, null), got_null in zip(computed, prog.float_nulls(kept), strict=True):
        assert got_null is None or got_null.any()
        np.testing.assert_array_equal(np.zeros(n, bool) if got_null is None else got_null,
                                      np.zeros(n, bool) if null is None else null)


def _identical(a, b) -> bool:
    """The same plain value: type, value, NaN for NaN, the sign of a zero."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (a != a and b != b) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


@settings(max_examples=300, deadline=None)
@given(tests=st.lists(st.tuples(st.sampled_from(["i", "j"]), st.integers(0, 2)), min_size=1, max_size=4),
       data=st.data())
def test_a_program_computed_from_plain_values_serves_python_of_its_run(tests, data):
    """`Program.python_floats` (to_dict's form: plain values converted to float images, tests of one int
    input as one lookup, or looked up once when the input holds one int in every row) gives, per
    output, the values `Program.python` serves of `run`'s column (defaults where null, bools as bools,
    float32 rounding) and PRESENT / NULL_VALUE codes where `run` is null (None when no row is)."""
    prog, slots, _, rows, n = _float_program(tests, data, float32=True)
    same: tuple[int, ...] = ()
    if data.draw(st.booleans(), label="i holds one int in every row"):
        rows["i"] = [data.draw(st.sampled_from(INT_EDGES))] * n
        same = (slots["i"],)
    computed = _run(prog, slots, rows, n)
    values, codes = prog.python_floats(lambda k: rows[list(FLOAT_INPUTS)[k]], same, n)
    assert len(values) == len(codes) == len(prog.outputs)
    for (p, si), got, got_codes in zip(prog.outputs, values, codes, strict=True):
        want = prog.python(si, prog.dtypes[p], computed[si])
        assert len(got) == n and all(_identical(a, b) for a, b in zip(got, want, strict=True)), (si, got, want)
        null = computed[si][1]
        want_codes = None if null is None or not null.any() else [2 if x else 1 for x in null.tolist()]
        assert got_codes == want_codes, (si, got_codes, want_codes)


def test_a_program_has_no_float_form_beyond_float64s_exact_ints_or_for_other_steps():
    dtypes = {"i": DType.INT64, "f": DType.FLOAT64, "b": DType.BOOL, "x": DType.FLOAT32}

    def prog(*exprs: str) -> Program:
        steps = []
        for k, expr in enumerate(exprs):
            dtype = DType.FLOAT64 if "/" in expr else DType.BOOL
            compiled, used = compile_step(f"d{k}", dtype, expr, None, {n: s for s, n in enumerate(dtypes)}, dtypes)
            steps.append(Step(f"d{k}", 4 + k, make_default(dtype, None), compiled, used))
        return Program(tuple(steps), 4, (DType.FLOAT64,) * (4 + len(exprs)), tuple(dtypes.values()))

    assert prog("i >= 7 and i < 10", "i < 6 or i >= 9007199254740991", "f / 2").floats
    assert not prog("i >= 7 and i < 10", "i < 9007199254740992").floats  # (edges kept where every int is a float64)
    assert not prog("i >= 7", "f > 1").floats
    assert not prog("i >= 7", "b").floats
    assert not prog("x / 2").floats  # (float32: read from the rows, not the matrix)
    assert not prog("f / i").floats
