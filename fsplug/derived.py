"""Derived features: a small, typed expression language compiled to vectorized numpy, and UDFs.

An expression (`expr:` of a derived feature) is parsed with Python's `ast` module and only a
whitelist of nodes is accepted: constants (numbers, strings, booleans), names of input features,
arithmetic (`+ - * / // % **`, unary `-`), comparisons (chains included), `and`/`or`/`not`,
`a if cond else b`, and calls of the functions in `FUNCTIONS`. No attribute access, subscripts,
lambdas, comprehensions or imports; user text is never `eval`ed or `compile`d. It is type-checked
once (`compile_expression`, at apply) against the inputs' dtypes and the declared dtype, then compiled
(`compile_expression`) into a closure over numpy arrays: one numpy operation per node for all rows,
no Python work per row (fewer where the types allow: a divisor that is never 0 is not checked, any
and/or/not of comparisons of one int input with constants is one table lookup). It also compiles into a plain-Python
form for one row (`Compiled.one`, `Program.run_one`: get_feature_vector's), with the same results
(numpy's int64 wrap-around, NaN rules and float conversions reproduced); functions only numpy computes
exactly alike (log, exp, **, day, month) and UDFs have none. A float result of arithmetic, min/max and a
division by a number never 0 also has a form on float images (`Compiled.floats`: float64 inputs, NaN
for null, no masks), and a test of an int input against constants its bounds (`Compiled.bound`):
`to_numpy()` computes a program of these from its matrix's columns straight into its own
(`Program.put_floats`, one lookup for all the tests of one input).

Values are columns: `(values, null)`, where `values` is a numpy array (int64, float64, bool, object
for strings, int64 microseconds for timestamps) and `null` is a bool mask or None (no nulls).
Null rules: an operation or function is null where any operand is null, except `is_null(x)` (never
null), `coalesce(a, b, ...)` (null only where every argument is), and `a if c else b` / `where(c, a,
b)` (null where `c` is, or where the branch taken is). A division or modulo by zero, `log` of a
number <= 0, `sqrt` of a negative number and a float result that is NaN are null. How inputs that are
not PRESENT arrive (their default, else null) is the caller's business (fsplug.kernel, training).

A UDF (`udf: package.module:function`) is imported at apply (`load_udf`); its parameters name its
inputs; it is called with one numpy array per parameter (null rows hold NaN, 0, False, "" or NaT)
and must return an array of the rows' length whose dtype fits the declared one.
"""

from __future__ import annotations

import ast
import bisect
import importlib
import inspect
import math
import operator
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from fsplug.errors import DerivedFeatureError, UserInputError, did_you_mean
from fsplug.kernel import NULL_VALUE, PRESENT, Default
from fsplug.types import EPOCH, DType

__all__ = ["ExpressionError", "DerivedFeatureError", "Kind", "FUNCTIONS", "Column", "Compiled",
           "compile_expression", "load_udf", "udf_parameters", "compile_udf", "KIND_OF", "DERIVED_DTYPES",
           "finish", "Step", "Program", "compile_step", "use_search_path"]


class ExpressionError(ValueError):
    """An expression that does not parse, names an unknown input, or does not type-check.

    `col` is the 0-based position in the expression text it is about (None when it is the whole)."""

    def __init__(self, message: str, col: int | None = None):
        super().__init__(message)
        self.col = col


class Kind(StrEnum):
    """The type of an expression's value."""

    INT = "int64"
    FLOAT = "float64"
    BOOL = "bool"
    STR = "string"
    TS = "timestamp"


KIND_OF: dict[DType, Kind] = {DType.INT64: Kind.INT, DType.FLOAT64: Kind.FLOAT, DType.FLOAT32: Kind.FLOAT,
                              DType.BOOL: Kind.BOOL, DType.STRING: Kind.STR, DType.TIMESTAMP: Kind.TS}
"""The expression type of each dtype an expression can read (bytes and lists cannot be read)."""

DERIVED_DTYPES = tuple(KIND_OF)
"""The dtypes a derived feature may declare."""

_NUMERIC = (Kind.INT, Kind.FLOAT)
_NP = {Kind.INT: np.int64, Kind.FLOAT: np.float64, Kind.BOOL: np.bool_, Kind.STR: object, Kind.TS: np.int64}
_DTYPES = {k: np.dtype(t) for k, t in _NP.items()}  # (builtin dtypes are singletons: `is` before `!=`)
_PLACEHOLDER = {Kind.INT: 0, Kind.FLOAT: math.nan, Kind.BOOL: False, Kind.STR: "", Kind.TS: 0}
_NULL_ONE = np.ones(1, dtype=bool)
_NULL_ONE.flags.writeable = False  # (shared by every null row of one)
_IMAGES = frozenset({DType.INT64, DType.FLOAT64})  # base columns whose float64 form derived features read
_F53 = 2.0**53  # a float64 holds every int of smaller magnitude exactly

Column = tuple[Any, Any]
"""(values, null): a numpy array (or a scalar, for constants) and a bool mask or None (no nulls)."""

Scalar = Callable[[Sequence[Any]], Any]
"""An expression for one row: its arguments' plain Python values (None: null) -> its value (None: null)."""


class _NoScalar(Exception):
    """A one-row evaluation met a value it does not compute like numpy (an int out of int64's range):
    the caller computes that row with the vectorized program instead."""


_I64 = 2**63
_I64F = float(_I64)


def _wrap(v: int) -> int:
    """An int as int64 arithmetic leaves it: wrapped around on overflow, as numpy does."""
    return v if -_I64 <= v < _I64 else (v + _I64) % (2 * _I64) - _I64


def _smax(a: Any, b: Any) -> Any:
    """numpy's maximum of two numbers: NaN if either is, `b` when they are equal (0.0 and -0.0)."""
    return a if a > b or a != a else b


def _smin(a: Any, b: Any) -> Any:
    """numpy's minimum of two numbers (as `_smax`)."""
    return a if a < b or a != a else b


def _lift1(s: Scalar | None, op: Callable[[Any], Any]) -> Scalar | None:
    """The scalar of a node applying `op` to one operand's value (null in, null out)."""
    if s is None:
        return None

    def f(env: Sequence[Any]) -> Any:
        v = s(env)
        return None if v is None else op(v)

    return f


def _lift2(sa: Scalar | None, sb: Scalar | None, op: Callable[[Any, Any], Any] | None,
           b: _Node | None = None) -> Scalar | None:
    """The scalar of a node applying `op` to two operands' values (null if either is); `b`, the right
    operand's node, lets a constant one be read once."""
    if sa is None or sb is None or op is None:
        return None
    if b is not None and b.is_const:
        kb = sb(())
        if kb is None:
            return lambda env: None

        def fk(env: Sequence[Any]) -> Any:
            a = sa(env)
            return None if a is None else op(a, kb)

        return fk

    def f(env: Sequence[Any]) -> Any:
        a = sa(env)
        if a is None:
            return None
        b = sb(env)
        return None if b is None else op(a, b)

    return f


def _scalar_op(op: Any, ints: bool) -> Callable[[Any, Any], Any] | None:
    """The plain-Python form of a binary ufunc the builder uses (`ints`: on two int64 operands)."""
    if ints and op in (np.add, np.subtract, np.multiply):
        py = {np.add: operator.add, np.subtract: operator.sub, np.multiply: operator.mul}[op]
        return lambda a, b: _wrap(py(a, b))
    return _SCALAR_OPS.get(op)


_SCALAR_OPS: dict[Any, Callable[[Any, Any], Any]] = {
    np.add: operator.add, np.subtract: operator.sub, np.multiply: operator.mul,
    np.equal: operator.eq, np.not_equal: operator.ne, np.less: operator.lt, np.less_equal: operator.le,
    np.greater: operator.gt, np.greater_equal: operator.ge, np.logical_and: operator.and_,
    np.logical_or: operator.or_, np.maximum: _smax, np.minimum: _smin,
}


def _operand(v: Any, kind: Kind) -> Any:
    """A constant as numpy operations take it fastest: a 0-d array of its kind's dtype (numbers and
    booleans; half the cost of a Python scalar, which numpy converts on every call), else as it is."""
    return np.array(v, dtype=_DTYPES[kind]) if kind in _NUMERIC or kind is Kind.BOOL else v


_QUIET = frozenset({np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
                    np.logical_and, np.logical_or, np.maximum, np.minimum})
"""Binary operations that raise no floating-point warning (comparisons and max/min of NaN included)."""
_INT_WRAP = frozenset({np.add, np.subtract, np.multiply})
"""... nor these on int64 arrays (they wrap around silently)."""
_FLOOR_QUIET = 2.0**-900  # an int64 over a float at least this is finite
_FLOAT_OPS = frozenset({np.add, np.subtract, np.multiply, np.maximum, np.minimum})
"""Binary operations whose float result is NaN where an operand is (numpy's maximum and minimum too)."""


def _or(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


# ---- the functions --------------------------------------------------------------------------------

FUNCTIONS: dict[str, str] = {
    "min": "min(a, b, ...): the smallest (int if all are int, else float)",
    "max": "max(a, b, ...): the largest",
    "abs": "abs(x): absolute value",
    "clip": "clip(x, lo, hi): x limited to [lo, hi]",
    "log": "log(x): natural logarithm (null for x <= 0)",
    "exp": "exp(x): e to the x",
    "sqrt": "sqrt(x): square root (null for x < 0)",
    "round": "round(x): nearest integer, halves to even (int)",
    "int": "int(x): truncated toward zero (int)",
    "float": "float(x): as a float",
    "coalesce": "coalesce(a, b, ...): the first argument that is not null",
    "is_null": "is_null(x): whether x is null (never null itself)",
    "where": "where(cond, a, b): a where cond, else b (like `a if cond else b`)",
    "hour": "hour(ts): hour of a timestamp, 0-23 (UTC)",
    "minute": "minute(ts): minute of a timestamp, 0-59",
    "weekday": "weekday(ts): day of the week, Monday = 0 (UTC)",
    "day": "day(ts): day of the month, 1-31 (UTC)",
    "month": "month(ts): month, 1-12 (UTC)",
}

_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class _Node:
    """A type-checked, compiled expression node: its type, its closure, its text (and value, if constant)."""

    kind: Kind
    fn: Callable[[Sequence[Column]], Column]
    text: str
    const: Any = None
    is_const: bool = False
    nullable: bool = True
    slot: int | None = None  # an input read as it is: its argument's index (lets parents skip a call)
    scalar: Scalar | None = None  # the same expression for one row (`Compiled.one`); None: not available
    floor: float | None = None  # > 0, and no value that is not null or NaN is below it (a divisor needs no check)
    quiet: bool = False  # its numpy operations raise no floating-point warning for any input (`Program.run`)
    bound: tuple[int, Intervals] | None = None  # a test of an int input: (its slot, where it is true)
    floats: bool = False  # `fn` on float images (see `Compiled.floats`) gives this node's float image


@dataclass(frozen=True)
class Compiled:
    """A compiled derived feature: `run(args)` -> its column, given its arguments' columns in `args` order."""

    kind: Kind
    args: tuple[str, ...]
    """The input names it reads, in slot order."""
    form: str
    """The compiled form, typed, as `fsplug plan --service` shows it."""
    run: Callable[[Sequence[Column], int], Column]
    one: Scalar | None = None
    """The same computation for one row in plain Python (arguments and result: a value, None for null),
    or None where it has none (UDFs, functions computed only by numpy such as log and exp). It may
    raise `_NoScalar` for a row it cannot compute like `run` (Program.run_one then answers None)."""
    quiet: bool = False
    """Whether `run` raises no floating-point warning for any input (Program.run then needs no errstate)."""
    floats: Callable[[Sequence[Column]], Column] | None = None
    """For a float result, the computation on float images, or None where it has none: given each
    argument as (its float64 values, NaN where null; None), `floats(args)[0]` is the result's values,
    NaN where it is null, without a mask (int arguments as float64 hold what numpy's conversion of their
    ints gives). Arithmetic, min/max/clip, abs, float() and a division by a number never 0 have it."""
    bound: tuple[int, Intervals] | None = None
    """For a bool result that tests one int argument against constants: (its index, where it is true)."""


def compile_expression(text: str, types: Callable[[str], Kind], declared: DType) -> Compiled:
    """Compile `text` (see the module docstring) into a `Compiled` whose result has `declared`'s type."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", (exc.offset or 1) - 1) from None
    b = _Builder(text.strip(), types)
    node = b.build(tree.body)
    want = KIND_OF.get(declared)
    if want is None:
        raise ExpressionError(f"a derived feature cannot be {declared.value}; use one of "
                              f"{', '.join(d.value for d in DERIVED_DTYPES)}")
    node = _coerce_result(node, want, declared)
    args = tuple(b.slots)
    fn = node.fn
    kind = node.kind

    def run(columns: Sequence[Column], n: int) -> Column:
        values, null = fn(columns)  # (Program.run ignores numpy's floating-point warnings around it)
        return finish(kind, values, null, n)

    one = node.scalar
    if one is not None and kind is Kind.FLOAT:  # `finish` for one value: NaN is null
        inner = one

        def one(env: Sequence[Any]) -> Any:
            v = inner(env)
            return None if v is None or v != v else v

    return Compiled(kind, args, node.text, run, one, node.quiet, fn if node.floats and kind is Kind.FLOAT else None,
                    node.bound if kind is Kind.BOOL else None)


def finish(kind: Kind, values: Any, null: Any, n: int) -> Column:
    """A result as a full column of `n` rows: constants broadcast, float NaN as null."""
    want = _DTYPES[kind]
    if type(values) is not np.ndarray or (values.dtype is not want and values.dtype != want):
        values = np.asarray(values, dtype=want)
    if values.shape != (n,):
        values = np.broadcast_to(values, (n,)).copy()
    if null is not None and (type(null) is not np.ndarray or null.shape != (n,)):
        null = np.broadcast_to(null, (n,)).copy()
    if kind is Kind.FLOAT:
        nan = np.isnan(values)
        if null is not None:
            null = null | nan
        elif np.count_nonzero(nan):  # (None when there is none: readers then skip the mask)
            null = nan
    return values, null


def _coerce_result(node: _Node, want: Kind, declared: DType) -> _Node:
    if node.kind is want:
        return node
    if want is Kind.FLOAT and node.kind is Kind.INT:
        return _float(node)
    hint = " (round(x) or int(x) make an int)" if want is Kind.INT and node.kind is Kind.FLOAT else ""
    raise ExpressionError(f"the expression is {node.kind.value} but the feature is declared {declared.value}{hint}")


def _float(node: _Node) -> _Node:
    if node.kind is Kind.FLOAT:
        return node
    fn = node.fn

    def f(env: Sequence[Column]) -> Column:
        v, nl = fn(env)
        return np.asarray(v, dtype=np.float64), nl

    return _Node(Kind.FLOAT, f, node.text, float(node.const) if node.is_const else None, node.is_const,
                 node.nullable, scalar=_lift1(node.scalar, float), floor=node.floor, quiet=node.quiet,
                 floats=node.floats)


_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
          ast.Pow: "**"}
_CMP = {ast.Eq: ("==", np.equal), ast.NotEq: ("!=", np.not_equal), ast.Lt: ("<", np.less),
        ast.LtE: ("<=", np.less_equal), ast.Gt: (">", np.greater), ast.GtE: (">=", np.greater_equal)}
_REFUSED = {
    ast.Attribute: "attribute access (x.y) is not part of the language",
    ast.Subscript: "subscripts (x[i]) are not part of the language",
    ast.Lambda: "lambdas are not part of the language",
    ast.ListComp: "comprehensions are not part of the language",
    ast.GeneratorExp: "comprehensions are not part of the language",
    ast.SetComp: "comprehensions are not part of the language",
    ast.DictComp: "comprehensions are not part of the language",
    ast.NamedExpr: "assignments (:=) are not part of the language",
    ast.JoinedStr: "f-strings are not part of the language",
}


class _Builder:
    """Type-checks an ast and builds the closures, node by node."""

    def __init__(self, text: str, types: Callable[[str], Kind]):
        self.text = text
        self.types = types
        self.slots: list[str] = []

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        col = getattr(node, "col_offset", None)
        where = ""
        if col is not None:
            snippet = ast.get_source_segment(self.text, node) or ""
            where = f" (at column {col + 1}: {snippet if len(snippet) <= 40 else snippet[:37] + '...'})"
        return ExpressionError(message + where, col)

    def build(self, node: ast.AST) -> _Node:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            why = _REFUSED.get(type(node)) or f"{type(node).__name__} is not part of the expression language"
            raise self.fail(node, why)
        result: _Node = method(node)
        return result

    # ---- leaves --------------------------------------------------------------------------------
    def _Constant(self, node: ast.Constant) -> _Node:
        v = node.value
        if isinstance(v, bool):
            kind = Kind.BOOL
        elif isinstance(v, int):
            if not -(2**63) <= v < 2**63:
                raise self.fail(node, f"{v} does not fit in int64")
            kind = Kind.INT
        elif isinstance(v, float):
            kind = Kind.FLOAT
        elif isinstance(v, str):
            kind = Kind.STR
        else:
            raise self.fail(node, f"constant {v!r} is not a number, string or boolean (is_null(x) tests for null)")
        col = (_operand(v, kind), None)
        return _Node(kind, lambda env: col, repr(v), v, True, False, scalar=lambda env: v, quiet=True,
                     floor=float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None,
                     floats=kind in _NUMERIC)

    def _Name(self, node: ast.Name) -> _Node:
        name = node.id
        try:
            kind = self.types(name)
        except ExpressionError as exc:
            raise self.fail(node, str(exc)) from None
        if name not in self.slots:
            self.slots.append(name)
        i = self.slots.index(name)
        return _Node(kind, lambda env: env[i], f"{name}:{kind.value}", slot=i, scalar=operator.itemgetter(i),
                     quiet=True, floats=kind in _NUMERIC)

    # ---- operators -----------------------------------------------------------------------------
    def _UnaryOp(self, node: ast.UnaryOp) -> _Node:
        x = self.build(node.operand)
        fn = x.fn
        if isinstance(node.op, ast.Not):
            self._want(node.operand, x, (Kind.BOOL,), "not")
            if x.bound is not None:
                return _interval_test(f"not {x.text}", x.bound[0], _complement(x.bound[1]), x.nullable)
            return self._map(Kind.BOOL, f"not {x.text}", x, np.logical_not, operator.not_)
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            self._want(node.operand, x, _NUMERIC, "unary -")
            if isinstance(node.op, ast.UAdd):
                return x
            if x.is_const:
                v = -x.const
                py = v.item() if isinstance(v, np.generic) else v  # (a folded constant is a numpy one)
                return _Node(x.kind, lambda env: (v, None), repr(v), v, True, False, scalar=lambda env: py,
                             quiet=True, floats=True)
            neg = (lambda v: _wrap(-v)) if x.kind is Kind.INT else operator.neg
            return _Node(x.kind, lambda env: (lambda c: (np.negative(c[0]), c[1]))(fn(env)), f"-{x.text}",
                         nullable=x.nullable, scalar=_lift1(x.scalar, neg), quiet=x.quiet,
                         floats=x.kind is Kind.FLOAT and x.floats)
        raise self.fail(node, f"{type(node.op).__name__} is not part of the expression language")

    def _map(self, kind: Kind, text: str, x: _Node, op: Callable[[Any], Any], sop: Callable[[Any], Any]) -> _Node:
        fn = x.fn

        def f(env: Sequence[Column]) -> Column:
            v, nl = fn(env)
            return op(v), nl

        return _Node(kind, f, text, nullable=x.nullable, scalar=_lift1(x.scalar, sop), quiet=x.quiet)

    def _want(self, node: ast.AST, x: _Node, kinds: Sequence[Kind], what: str) -> None:
        if x.kind not in kinds:
            raise self.fail(node, f"{what} takes {' or '.join(k.value for k in kinds)}; got {x.kind.value} "
                                  f"({x.text})")

    def _BinOp(self, node: ast.BinOp) -> _Node:
        op = _ARITH.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not part of the expression language")
        a, b = self.build(node.left), self.build(node.right)
        text = f"({a.text} {op} {b.text})"
        if op == "-" and a.kind is Kind.TS and b.kind is Kind.TS:  # seconds between two times
            return self._binary(Kind.FLOAT, text, a, b, lambda x, y: (x - y) / 1e6,
                                sop=lambda x, y: _wrap(x - y) / 1e6)
        self._want(node.left, a, _NUMERIC, f"'{op}'")
        self._want(node.right, b, _NUMERIC, f"'{op}'")
        if op in ("/", "//", "%") and b.is_const and b.const == 0:
            raise self.fail(node, f"division by zero: '{op} {b.text}' is never defined")
        both_int = a.kind is Kind.INT and b.kind is Kind.INT
        if op == "/":  # (true division gives floats from ints: no conversion needed)
            return self._divide(Kind.FLOAT, text, a, b, np.true_divide)
        if op == "**":
            return self._binary(Kind.FLOAT, text, _float(a), _float(b), np.power, domain=_pow_domain)
        kind = Kind.INT if both_int else Kind.FLOAT
        if not both_int:
            a, b = _float(a), _float(b)
        if op == "//":
            return self._divide(kind, text, a, b, np.floor_divide)
        if op == "%":
            return self._divide(kind, text, a, b, np.mod)
        ufunc = {"+": np.add, "-": np.subtract, "*": np.multiply}[op]
        return self._binary(kind, text, a, b, ufunc)

    def _binary(self, kind: Kind, text: str, a: _Node, b: _Node, op: Callable[[Any, Any], Any],
                domain: Callable[[Any, Any], Any] | None = None,
                sop: Callable[[Any, Any], Any] | None = None) -> _Node:
        """`op(a, b)` for all rows, null where either is (or `domain` says so); `sop` the scalar form
        (default: `_scalar_op`'s; none with a `domain`)."""
        fa, fb = a.fn, b.fn
        if sop is None and domain is None:
            sop = _scalar_op(op, a.kind is Kind.INT and b.kind is Kind.INT)
        scalar = _lift2(a.scalar, b.scalar, sop, b)
        nullable = a.nullable or b.nullable or domain is not None
        # the common shapes get closures without a call per operand (one ufunc per node is the work)
        if domain is None and b.is_const and not a.is_const:
            kb = _operand(b.const, b.kind)
            if a.slot is not None:
                ia = a.slot

                def f(env: Sequence[Column]) -> Column:
                    va, na = env[ia]
                    return op(va, kb), na
            else:
                def f(env: Sequence[Column]) -> Column:
                    va, na = fa(env)
                    return op(va, kb), na
        elif domain is None:
            def f(env: Sequence[Column]) -> Column:
                va, na = fa(env)
                vb, nb = fb(env)
                return op(va, vb), (nb if na is None else na if nb is None else na | nb)
        else:
            def f(env: Sequence[Column]) -> Column:
                va, na = fa(env)
                vb, nb = fb(env)
                return op(va, vb), _or(_or(na, nb), domain(va, vb))
        # the larger of two numbers is at least either's floor (NaN stays NaN), the smaller at least the lower one
        floors = [x for x in (a.floor, b.floor) if x is not None]
        floor = (max(floors) if floors and op is np.maximum else min(floors) if len(floors) == 2 and op is np.minimum
                 else None)
        quiet = a.quiet and b.quiet and domain is None and (op in _QUIET or (kind is Kind.INT and op in _INT_WRAP))
        floats = kind is Kind.FLOAT and op in _FLOAT_OPS and a.floats and b.floats
        return self._fold(_Node(kind, f, text, nullable=nullable, scalar=scalar, floor=floor, quiet=quiet,
                                floats=floats), a, b)

    def _divide(self, kind: Kind, text: str, a: _Node, b: _Node, op: Callable[[Any, Any], Any]) -> _Node:
        """`op(a, b)` (a division or modulo), null where b is 0 (no check when b is never 0: `floor`)."""
        fa, fb = a.fn, b.fn

        def f_nonzero(env: Sequence[Column]) -> Column:
            va, na = fa(env)
            vb, nb = fb(env)
            return op(va, vb), (nb if na is None else na if nb is None else na | nb)

        def f(env: Sequence[Column]) -> Column:
            va, na = fa(env)
            vb, nb = fb(env)
            null = nb if na is None else na if nb is None else na | nb
            zero = vb == 0
            if type(zero) is np.ndarray:
                if zero.any():  # (a check, so that the common case costs one comparison)
                    return op(va, np.where(zero, 1, vb)), (zero if null is None else null | zero)
                return op(va, vb), null
            if zero:
                return op(va, 1), True
            return op(va, vb), null

        if op is np.true_divide:
            sop: Callable[[Any, Any], Any] = lambda x, y: float(x) / float(y)  # noqa: E731 - as numpy: both as floats
        elif op is np.floor_divide:
            sop = (lambda x, y: _wrap(x // y)) if kind is Kind.INT else operator.floordiv
        else:
            sop = operator.mod
        sa, sb = a.scalar, b.scalar
        scalar = None
        if sa is not None and sb is not None:
            def scalar(env: Sequence[Any]) -> Any:
                x = sa(env)
                if x is None:
                    return None
                y = sb(env)
                return None if y is None or y == 0 else sop(x, y)

        # an int over a nonzero int, or over a float never below a floor, is finite: no warning
        quiet = (a.quiet and b.quiet and op is np.true_divide and a.kind is Kind.INT
                 and (b.kind is Kind.INT or (b.floor is not None and b.floor >= _FLOOR_QUIET)))
        # (by a divisor never 0, a float result: NaN in, NaN out; no check that a float image would miss)
        floats = kind is Kind.FLOAT and b.floor is not None and a.floats and b.floats
        return self._fold(_Node(kind, f_nonzero if b.floor is not None else f, text, scalar=scalar, quiet=quiet,
                                floats=floats), a, b)

    @staticmethod
    def _fold(node: _Node, *parts: _Node) -> _Node:
        """A node whose operands are all constants, computed once (its value is a numpy scalar)."""
        if not all(p.is_const for p in parts):
            return node
        with np.errstate(all="ignore"):
            v, nl = node.fn(())
        if nl is not None and bool(nl):  # always null
            return _Node(node.kind, lambda env: (v, True), node.text, scalar=lambda env: None, quiet=True)
        if node.kind is Kind.FLOAT and v != v:
            return _Node(node.kind, lambda env: (v, True), node.text, scalar=lambda env: None, quiet=True)
        py = v.item() if isinstance(v, (np.generic, np.ndarray)) else v  # (a 0-d result too)
        return _Node(node.kind, lambda env: (v, None), node.text, v, True, False, scalar=lambda env: py,
                     floor=float(py) if node.kind in _NUMERIC and py > 0 else None, quiet=True,
                     floats=node.kind in _NUMERIC)

    def _Compare(self, node: ast.Compare) -> _Node:
        for op in node.ops:
            if type(op) not in _CMP:
                raise self.fail(node, f"comparison {type(op).__name__} is not part of the expression language "
                                      "(use ==, !=, <, <=, >, >=)")
        operands = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        parts = []
        for op, (left, right_node), right in zip(node.ops, zip(operands, operands[1:], strict=False),
                                                 node.comparators, strict=True):
            a, b = left, right_node
            name, ufunc = _CMP[type(op)]
            if a.kind in _NUMERIC and b.kind in _NUMERIC:
                if a.kind is not b.kind:
                    a, b = _float(a), _float(b)
            elif a.kind is not b.kind:
                raise self.fail(right, f"cannot compare {a.kind.value} ({a.text}) with {b.kind.value} ({b.text})")
            elif a.kind is Kind.BOOL and name not in ("==", "!="):
                raise self.fail(right, f"booleans compare only with == and != ({a.text} {name} {b.text})")
            part = self._binary(Kind.BOOL, f"({a.text} {name} {b.text})", a, b, ufunc)
            parts.append(replace(part, bound=_bound(a, name, b)))
        node_ = parts[0]
        for p in parts[1:]:
            node_ = self._logic(f"({node_.text} and {p.text})", node_, p, np.logical_and)
        return node_

    def _logic(self, text: str, a: _Node, b: _Node, ufunc: Any) -> _Node:
        """`a and b` / `a or b`; tests of one int input against constants as one lookup
        (`h >= 7 and h < 10 or h >= 16 and h < 19`: 2 numpy operations instead of 7; `_interval_test`)."""
        ba, bb = a.bound, b.bound
        if ba is not None and bb is not None and ba[0] == bb[0]:
            both = _intersect(ba[1], bb[1]) if ufunc is np.logical_and else _union(ba[1], bb[1])
            return _interval_test(text, ba[0], both, a.nullable)
        return self._binary(Kind.BOOL, text, a, b, ufunc)

    def _BoolOp(self, node: ast.BoolOp) -> _Node:
        word, ufunc = ("and", np.logical_and) if isinstance(node.op, ast.And) else ("or", np.logical_or)
        values = [self.build(v) for v in node.values]
        for raw, v in zip(node.values, values, strict=True):
            self._want(raw, v, (Kind.BOOL,), f"'{word}'")
        out = values[0]
        for v in values[1:]:
            out = self._logic(f"({out.text} {word} {v.text})", out, v, ufunc)
        return out

    def _IfExp(self, node: ast.IfExp) -> _Node:
        return self._choose(node, node.test, node.body, node.orelse)

    def _choose(self, node: ast.AST, test_n: ast.AST, body_n: ast.AST, else_n: ast.AST) -> _Node:
        c, a, b = self.build(test_n), self.build(body_n), self.build(else_n)
        self._want(test_n, c, (Kind.BOOL,), "a condition")
        a, b = self._same(node, [a, b], "the two branches")
        fc, fa, fb = c.fn, a.fn, b.fn

        def f(env: Sequence[Column]) -> Column:
            vc, nc = fc(env)
            va, na = fa(env)
            vb, nb = fb(env)
            null = None
            if na is not None or nb is not None:
                null = np.where(vc, False if na is None else na, False if nb is None else nb)
            return np.where(vc, va, vb), _or(nc, null)

        sc, sa, sb = c.scalar, a.scalar, b.scalar
        scalar = None
        if sc is not None and sa is not None and sb is not None:
            def scalar(env: Sequence[Any]) -> Any:
                x = sc(env)
                if x is None:
                    return None
                return sa(env) if x else sb(env)

        return self._fold(_Node(a.kind, f, f"where({c.text}, {a.text}, {b.text})", scalar=scalar,
                                quiet=c.quiet and a.quiet and b.quiet), c, a, b)

    def _same(self, node: ast.AST, nodes: list[_Node], what: str) -> list[_Node]:
        kinds = {n.kind for n in nodes}
        if len(kinds) == 1:
            return nodes
        if kinds <= set(_NUMERIC):
            return [_float(n) for n in nodes]
        got = ", ".join(f"{n.kind.value} ({n.text})" for n in nodes)
        raise self.fail(node, f"{what} must have one type; got {got}")

    # ---- calls -----------------------------------------------------------------------------------
    def _Call(self, node: ast.Call) -> _Node:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only the language's functions can be called "
                                  f"({', '.join(FUNCTIONS)})")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(node, f"unknown function {name!r}{did_you_mean(name, list(FUNCTIONS))}; the functions "
                                  f"are {', '.join(FUNCTIONS)}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, f"{name}() takes plain positional arguments")
        if name == "where":
            self._arity(node, name, 3, 3)
            return self._choose(node, *node.args)
        args = [self.build(a) for a in node.args]
        return getattr(self, "_fn_" + name)(node, args)

    def _arity(self, node: ast.Call, name: str, lo: int, hi: int | None) -> None:
        n = len(node.args)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            raise self.fail(node, f"{name}() takes {want} argument{'s' if want != '1' else ''}; got {n} "
                                  f"({FUNCTIONS[name]})")

    def _numeric_args(self, node: ast.Call, args: list[_Node], name: str) -> list[_Node]:
        for raw, a in zip(node.args, args, strict=True):
            self._want(raw, a, _NUMERIC, f"{name}()")
        return args if all(a.kind is Kind.INT for a in args) else [_float(a) for a in args]

    def _reduce(self, node: ast.Call, args: list[_Node], name: str, ufunc: Any) -> _Node:
        self._arity(node, name, 2, None)
        args = self._numeric_args(node, args, name)
        out = args[0]
        for a in args[1:]:
            out = self._binary(a.kind, "", out, a, ufunc)
        return _Node(out.kind, out.fn, f"{name}({', '.join(a.text for a in args)})", out.const, out.is_const,
                     out.nullable, scalar=out.scalar, floor=out.floor, quiet=out.quiet, floats=out.floats)

    def _fn_min(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._reduce(node, args, "min", np.minimum)

    def _fn_max(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._reduce(node, args, "max", np.maximum)

    def _unary_fn(self, node: ast.Call, args: list[_Node], name: str, kinds: Sequence[Kind], out: Kind | None,
                  op: Callable[[Any], Any], domain: Callable[[Any], Any] | None = None,
                  const_domain_error: str | None = None, sop: Callable[[Any], Any] | None = None,
                  sdomain: Callable[[Any], bool] | None = None, quiet: bool = False, floats: bool = False) -> _Node:
        """`op(x)` for all rows, null where x is (or `domain` says so); `sop` / `sdomain` their scalar
        forms (no scalar without `sop`, or with a `domain` but no `sdomain`); `floats`: a float `op`
        gives NaN for NaN."""
        self._arity(node, name, 1, 1)
        (x,) = args
        self._want(node.args[0], x, kinds, f"{name}()")
        kind = out or x.kind
        if kind is Kind.FLOAT:
            x = _float(x) if x.kind in _NUMERIC else x
        if domain is not None and x.is_const and const_domain_error and bool(domain(x.const)):
            raise self.fail(node, f"{name}({x.text}) {const_domain_error}")
        fn = x.fn
        if domain is None:
            def f(env: Sequence[Column]) -> Column:
                v, nl = fn(env)
                return op(v), nl
        else:
            def f(env: Sequence[Column]) -> Column:
                v, nl = fn(env)
                bad = domain(v)
                return op(np.where(bad, 1, v)), _or(nl, bad if np.ndim(bad) else (bad or None))
        scalar = None
        if domain is None:
            scalar = _lift1(x.scalar, sop) if sop is not None else None
        elif sop is not None and sdomain is not None:
            scalar = _lift1(x.scalar, lambda v: None if sdomain(v) else sop(v))
        return self._fold(_Node(kind, f, f"{name}({x.text})", nullable=x.nullable or domain is not None,
                                scalar=scalar, quiet=quiet and x.quiet,
                                floats=floats and kind is Kind.FLOAT and domain is None and x.floats), x)

    def _fn_abs(self, node: ast.Call, args: list[_Node]) -> _Node:
        sop = (lambda v: _wrap(abs(v))) if args and args[0].kind is Kind.INT else abs
        return self._unary_fn(node, args, "abs", _NUMERIC, None, np.abs, sop=sop, quiet=True, floats=True)

    def _fn_log(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._unary_fn(node, args, "log", _NUMERIC, Kind.FLOAT, np.log, lambda v: np.less_equal(v, 0),
                              "is never defined")

    def _fn_exp(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._unary_fn(node, args, "exp", _NUMERIC, Kind.FLOAT, np.exp)

    def _fn_sqrt(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._unary_fn(node, args, "sqrt", _NUMERIC, Kind.FLOAT, np.sqrt, lambda v: np.less(v, 0),
                              "is never defined", math.sqrt, lambda v: v < 0)  # (sqrt is exact everywhere)

    def _fn_float(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._unary_fn(node, args, "float", _NUMERIC, Kind.FLOAT, lambda v: v, sop=float, floats=True)

    def _fn_int(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._to_int(node, args, "int", np.trunc, math.trunc)

    def _fn_round(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._to_int(node, args, "round", np.rint, round)  # (both: halves to even)

    def _to_int(self, node: ast.Call, args: list[_Node], name: str, op: Callable[[Any], Any],
                sop: Callable[[float], int]) -> _Node:
        self._arity(node, name, 1, 1)
        (x,) = args
        self._want(node.args[0], x, _NUMERIC, f"{name}()")
        if x.kind is Kind.INT:
            return _Node(Kind.INT, x.fn, f"{name}({x.text})", x.const, x.is_const, x.nullable, scalar=x.scalar,
                         quiet=x.quiet)

        def conv(v: Any) -> Any:
            return np.asarray(op(v), dtype=np.int64)

        # NaN, +-inf and a float outside int64 have no int: null (numpy's cast of one would be the
        # platform's business). The float bounds are exact, and op() cannot cross them.
        return self._unary_fn(node, args, name, _NUMERIC, Kind.INT, conv,
                              lambda v: ~((np.asarray(v) >= -_I64F) & (np.asarray(v) < _I64F)), sop=sop,
                              sdomain=lambda v: not -_I64F <= v < _I64F)

    def _fn_clip(self, node: ast.Call, args: list[_Node]) -> _Node:
        self._arity(node, "clip", 3, 3)
        x, lo, hi = self._numeric_args(node, args, "clip")
        inner = self._binary(x.kind, "", x, lo, np.maximum)
        out = self._binary(x.kind, "", inner, hi, np.minimum)
        return _Node(out.kind, out.fn, f"clip({x.text}, {lo.text}, {hi.text})", out.const, out.is_const,
                     out.nullable, scalar=out.scalar, floor=out.floor, quiet=out.quiet, floats=out.floats)

    def _fn_coalesce(self, node: ast.Call, args: list[_Node]) -> _Node:
        self._arity(node, "coalesce", 2, None)
        args = self._same(node, args, "coalesce()'s arguments")
        fns = [a.fn for a in args]
        kind = args[0].kind

        def f(env: Sequence[Column]) -> Column:
            values, null = fns[0](env)
            null = _nulls(kind, values, null)
            for fn in fns[1:]:
                if null is None:
                    break
                v, nl = fn(env)
                values = np.where(null, v, values)
                nl = _nulls(kind, v, nl)
                null = None if nl is None else null & nl
            return values, null

        scalars = [a.scalar for a in args]
        scalar = None
        if all(sc is not None for sc in scalars):
            floats = kind is Kind.FLOAT

            def scalar(env: Sequence[Any]) -> Any:
                for sc in scalars:
                    v = sc(env)  # type: ignore[misc]  # (checked above)
                    if v is not None and not (floats and v != v):
                        return v
                return None

        return _Node(kind, f, f"coalesce({', '.join(a.text for a in args)})",
                     nullable=all(a.nullable for a in args), scalar=scalar, quiet=all(a.quiet for a in args))

    def _fn_is_null(self, node: ast.Call, args: list[_Node]) -> _Node:
        self._arity(node, "is_null", 1, 1)
        (x,) = args
        fn, kind = x.fn, x.kind

        def f(env: Sequence[Column]) -> Column:
            v, nl = fn(env)
            nl = _nulls(kind, v, nl)
            return (False if nl is None else nl), None

        sx = x.scalar
        scalar = None
        if sx is not None:
            floats = kind is Kind.FLOAT

            def scalar(env: Sequence[Any]) -> Any:
                v = sx(env)
                return v is None or (floats and v != v)

        return _Node(Kind.BOOL, f, f"is_null({x.text})", nullable=False, scalar=scalar, quiet=x.quiet)

    def _time_part(self, node: ast.Call, args: list[_Node], name: str, op: Callable[[Any], Any],
                   sop: Callable[[int], int] | None = None) -> _Node:
        return self._unary_fn(node, args, name, (Kind.TS,), Kind.INT, op, sop=sop)

    def _fn_hour(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._time_part(node, args, "hour", lambda us: (np.floor_divide(us, 3_600_000_000) % 24),
                               lambda us: us // 3_600_000_000 % 24)

    def _fn_minute(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._time_part(node, args, "minute", lambda us: (np.floor_divide(us, 60_000_000) % 60),
                               lambda us: us // 60_000_000 % 60)

    def _fn_weekday(self, node: ast.Call, args: list[_Node]) -> _Node:
        # 1970-01-01 was a Thursday (3 when Monday is 0)
        return self._time_part(node, args, "weekday", lambda us: (np.floor_divide(us, _US_PER_DAY) + 3) % 7,
                               lambda us: (us // _US_PER_DAY + 3) % 7)

    def _fn_day(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._time_part(node, args, "day", lambda us: _calendar(us, "D", "M") + 1)

    def _fn_month(self, node: ast.Call, args: list[_Node]) -> _Node:
        return self._time_part(node, args, "month", lambda us: _calendar(us, "M", "Y") + 1)


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


Intervals = tuple[tuple[int, int], ...]
"""Where a test of an int x is true: disjoint, sorted, non-adjacent [lo, hi) (lo <= x < hi), within
[-2**63, 2**63) (those ends mean unbounded)."""


def _normal(pairs: Sequence[tuple[int, int]]) -> Intervals:
    """`pairs` (any order, overlapping or empty ones allowed) as `Intervals`."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((max(lo, -_I64), min(hi, _I64)) for lo, hi in pairs):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _union(a: Intervals, b: Intervals) -> Intervals:
    return _normal(a + b)


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    return _normal([(max(x[0], y[0]), min(x[1], y[1])) for x in a for y in b])


def _complement(a: Intervals) -> Intervals:
    edges = [-_I64, *(e for pair in a for e in pair), _I64]
    return _normal(list(zip(edges[::2], edges[1::2], strict=True)))


def _bound(a: _Node, op: str, b: _Node) -> tuple[int, Intervals] | None:
    """`a op b` as (slot, where it is true) when it tests an int input x against an int constant."""
    if b.slot is not None and a.is_const:
        a, b, op = b, a, _FLIP[op]
    if a.slot is None or a.kind is not Kind.INT or not b.is_const or b.kind is not Kind.INT:
        return None
    c = int(b.const)
    sets = {">=": [(c, _I64)], ">": [(c + 1, _I64)], "<": [(-_I64, c)], "<=": [(-_I64, c + 1)],
            "==": [(c, c + 1)], "!=": [(-_I64, c), (c + 1, _I64)]}
    return a.slot, _normal(sets[op])


def _edges(where: Intervals) -> list[int]:
    """The sorted ends of `where`'s intervals (the unbounded ones left out)."""
    return sorted({e for pair in where for e in pair} - {-_I64, _I64})


def _stretches(where: Intervals, edges: Sequence[int]) -> list[bool]:
    """Per stretch between sorted `edges` (below the first, then from each one on): whether it lies in `where`
    (`edges` holds every end of `where`'s intervals)."""
    return [any(lo <= x < hi for lo, hi in where) for x in (-_I64, *edges)]


def _interval_test(text: str, slot: int, where: Intervals, nullable: bool) -> _Node:
    """Whether int input `slot` lies in `where` (null where it is), for any and/or/not of its
    comparisons with constants: which of the sorted edges of `where` each x has passed
    (`searchsorted`) picks the answer from a table, 2 numpy operations for any number of tests."""
    edges = _edges(where)
    answers = _stretches(where, edges)
    table, cut = np.array(answers, dtype=bool), np.array(edges, dtype=np.int64)

    def f(env: Sequence[Column]) -> Column:
        v, nl = env[slot]
        return table[cut.searchsorted(v, "right")], nl

    def scalar(env: Sequence[Any]) -> Any:
        x = env[slot]
        return None if x is None else answers[bisect.bisect_right(edges, x)]

    return _Node(Kind.BOOL, f, text, nullable=nullable, scalar=scalar, bound=(slot, where), quiet=True)


@lru_cache(maxsize=128)
def _packer(n: int, code: str) -> Callable[..., bytes]:
    return struct.Struct(f"{n}{code}").pack


def _image(values: Sequence[Any], n: int, ints: bool) -> np.ndarray:
    """`n` plain numbers (`ints`: of an int64 column), None for null, as float64 with NaN for null: the
    values `np.array(values, dtype=np.float64)` gives (a number through its float, correctly rounded;
    an int64 the same through numpy's conversion), packed by `struct` (about half numpy's cost per
    value), or by numpy (`fromiter`) when `struct` refuses one (None; a float among ints)."""
    try:
        if ints:
            return np.frombuffer(_packer(n, "q")(*values), np.int64).astype(np.float64)
        return np.frombuffer(_packer(n, "d")(*values), np.float64)
    except struct.error:
        return np.fromiter(values, np.float64, n)


def _calendar(us: Any, unit: str, within: str) -> Any:
    t = np.asarray(us, dtype=np.int64).astype("datetime64[us]")
    return (t.astype(f"datetime64[{unit}]") - t.astype(f"datetime64[{within}]")).astype(np.int64)


def _nulls(kind: Kind, values: Any, null: Any) -> Any:
    """`null`, with a float NaN counted as null too (coalesce and is_null see NaN as null)."""
    if kind is Kind.FLOAT:
        nan = np.isnan(values)
        if np.ndim(nan) == 0:
            nan = bool(nan) or None
        return _or(null, nan)
    return null


def _pow_domain(a: Any, b: Any) -> Any:
    """Where a ** b has no real value: a negative base with a fractional exponent, or 0 ** negative."""
    return ((np.less(a, 0) & np.not_equal(np.floor(b), b)) | (np.equal(a, 0) & np.less(b, 0)))


# ---- UDFs ---------------------------------------------------------------------------------------

def use_search_path(root: Path) -> None:
    """Let UDF modules kept in the feature repo at `root` import: it is appended to sys.path (installed
    packages come first)."""
    if str(root) not in sys.path:
        sys.path.append(str(root))


def load_udf(path: str, search: Path | None = None) -> Callable[..., Any]:
    """Import `package.module:function`; ExpressionError saying what is wrong when it cannot.

    `search` (the feature repo's folder) goes on sys.path first (`use_search_path`).
    """
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ExpressionError(f"udf {path!r} must look like 'package.module:function'")
    module_name, fn_name = path.split(":")
    if search is not None:
        use_search_path(search)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExpressionError(f"udf {path!r}: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:  # the module itself failed while importing
        raise ExpressionError(f"udf {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, fn_name, None)
    if fn is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ExpressionError(f"udf {path!r}: module {module_name!r} has no function {fn_name!r}"
                              f"{did_you_mean(fn_name, names)}")
    if not callable(fn):
        raise ExpressionError(f"udf {path!r}: {fn_name!r} is not a function")
    return fn


def udf_parameters(fn: Callable[..., Any], path: str) -> tuple[str, ...]:
    """The names of a UDF's parameters, which name its inputs; ExpressionError for *args or keyword-only ones."""
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise ExpressionError(f"udf {path!r}: parameter {p.name!r} must be a plain positional parameter "
                                  "(each parameter names an input feature)")
        params.append(p.name)
    if not params:
        raise ExpressionError(f"udf {path!r} takes no parameters; its parameters name the input features it reads")
    return tuple(params)


def compile_udf(path: str, fn: Callable[..., Any], args: Sequence[str], kinds: Sequence[Kind],
                declared: DType) -> Compiled:
    """A UDF as a `Compiled`: called with one numpy array per argument, its output checked every call."""
    want = KIND_OF.get(declared)
    if want is None:
        raise ExpressionError(f"a derived feature cannot be {declared.value}")
    kinds = tuple(kinds)

    def run(columns: Sequence[Column], n: int) -> Column:
        arrays = []
        null = None
        for (given, nl), k in zip(columns, kinds, strict=True):
            v: Any = np.broadcast_to(np.asarray(given, dtype=_NP[k]), (n,))
            if k is Kind.TS:
                v = v.astype("datetime64[us]")
                if nl is not None:
                    v = np.where(nl, np.datetime64("NaT"), v)
            arrays.append(v)
            null = _or(null, nl)
        try:
            out = fn(*arrays)
        except Exception as exc:
            raise DerivedFeatureError(f"udf {path} raised {type(exc).__name__}: {exc}") from exc
        return _udf_output(path, out, want, declared, n, null)

    typed = ", ".join(f"{a}:{k.value}" for a, k in zip(args, kinds, strict=True))
    return Compiled(want, tuple(args), f"{path}({typed})", run)


def _udf_output(path: str, out: Any, want: Kind, declared: DType, n: int, null: Any) -> Column:
    arr = np.asarray(out)
    if arr.shape != (n,):
        raise DerivedFeatureError(f"udf {path} returned shape {arr.shape} for {n} rows; it must return one value "
                                  "per row")
    k = arr.dtype.kind
    ok = {Kind.INT: k in "iu", Kind.FLOAT: k in "iuf", Kind.BOOL: k == "b", Kind.STR: k in "OU",
          Kind.TS: k == "M"}[want]
    if not ok:
        raise DerivedFeatureError(f"udf {path} returned {arr.dtype} values; the feature is declared "
                                  f"{declared.value}")
    if want is Kind.STR:
        arr = arr.astype(object)
        none = np.array([v is None for v in arr.tolist()], dtype=bool)
        if none.any():
            null = _or(null, none)
            arr = np.where(none, "", arr)
        bad = [v for v in arr.tolist() if type(v) is not str]
        if bad:
            raise DerivedFeatureError(f"udf {path} returned {bad[0]!r}; the feature is declared string")
        return arr, null
    if want is Kind.TS:
        arr = arr.astype("datetime64[us]")
        nat = np.isnat(arr)
        return arr.astype(np.int64), (_or(null, nat) if nat.any() else null)
    values, null = finish(want, arr.astype(_NP[want]), null, n)
    return values, null


# ---- programs: the derived features of one retrieval plan ----------------------------------------

def compile_step(ref: str, dtype: DType, expr: str | None, udf: str | None, slots: Mapping[str, int],
                 dtypes: Mapping[str, DType]) -> tuple[Compiled, tuple[int, ...]]:
    """Compile one derived feature of a plan: (its `Compiled`, the slot of each of its arguments).

    `slots`/`dtypes` give each name it reads its slot and dtype. Raises DerivedFeatureError when it
    does not compile here (a UDF's module not importable on this host, a registry edited by hand).
    """
    def kind(name: str) -> Kind:
        k = KIND_OF.get(dtypes[name]) if name in dtypes else None
        if k is None:
            raise ExpressionError(f"unknown input {name!r}")
        return k

    try:
        if expr is not None:
            compiled = compile_expression(expr, kind, dtype)
        else:
            assert udf is not None  # a derived feature has one of them (checked at apply)
            fn = load_udf(udf)
            params = udf_parameters(fn, udf)
            compiled = compile_udf(udf, fn, params, [kind(p) for p in params], dtype)
    except ExpressionError as exc:
        raise DerivedFeatureError(f"derived feature {ref}: {exc}") from None
    return compiled, tuple(slots[name] for name in compiled.args)


_FloatStep = tuple[int, Callable[[Sequence[Column]], Column], tuple[int, ...], float | None, int]
_FloatPlan = tuple[tuple[int, ...], tuple[tuple[int, np.ndarray, np.ndarray, Any, tuple[int, ...]], ...],
                   tuple[_FloatStep, ...]]


def as_f32(values: np.ndarray) -> np.ndarray:
    """Float64 values rounded to float32 (a float32 output's values as every form serves them)."""
    return values.astype(np.float32).astype(np.float64)


def _rounded(values: Sequence[float], f32: bool) -> Sequence[float]:
    return as_f32(np.asarray(values, dtype=np.float64)).tolist() if f32 else values


@dataclass(frozen=True)
class Step:
    """One compiled derived feature of a plan: what it computes and from which slots."""

    ref: str
    output: int  # position in the plan's output columns, -1 when only other steps read it
    default: Default
    compiled: Compiled
    slots: tuple[int, ...]  # per argument: a base column index, or n_base + the index of an earlier step


class Program:
    """The derived features of a plan, run over all rows at once.

    `run(inputs, n)` takes the base columns the steps read (`needed`) as `(values, null)` columns in
    which values that are not PRESENT already hold their default (and null is set only where there
    is none), and returns every step's `(values, null)`. A step reading another one gets its default
    where it is null, as for any input.
    """

    def __init__(self, steps: tuple[Step, ...], n_base: int, dtypes: tuple[DType, ...],
                 base_dtypes: tuple[DType, ...] = ()):
        self.steps = steps
        self.n_base = n_base
        self.needed = tuple(sorted({s for st in steps for s in st.slots if s < n_base}))
        """The base column indexes the steps read."""
        self.outputs = tuple(sorted((st.output, i) for i, st in enumerate(steps) if st.output >= 0))
        """(output position, step index) of each derived output column, by position."""
        self.dtypes = dtypes
        self.f32 = tuple(st.output >= 0 and dtypes[st.output] is DType.FLOAT32 for st in steps)
        """Per step, whether it is a float32 output: computed in float64, served rounded to float32 in every
        form (`as_f32`; a default as declared)."""
        self.text_outputs = tuple(st.ref for st in steps if st.output >= 0 and st.compiled.kind is Kind.STR)
        """The derived outputs with text values (no number for a model vector)."""
        self._fills = tuple(None if st.default.stored is None else st.default.stored for st in steps)
        self._ones = tuple(st.compiled.one for st in steps)
        self.quiet = all(st.compiled.quiet for st in steps)
        """Whether no step can raise a floating-point warning (`run` then skips np.errstate, 2 us)."""
        self.has_one = all(one is not None for one in self._ones)
        """Whether every step has a one-row form (`run_one`): expressions without log, exp, ** nor
        day/month, and no UDF."""
        plan = self._float_plan(base_dtypes)
        self.floats = plan is not None
        """Whether `put_floats` computes every step (`base_dtypes`, the base columns' dtypes, given)."""
        self._float_slots, self._tests, self._float_steps = plan or ((), (), ())
        self.test_slots = tuple(slot for slot, *_ in self._tests)
        """The int inputs of the float plan's tests (`python_floats` looks up one that holds one value once)."""
        self._py_tests, self._py_floats = self._python_plan()
        self._int_slots = frozenset(i for i, d in enumerate(base_dtypes) if d is DType.INT64)

    def _float_plan(self, base_dtypes: tuple[DType, ...]) -> _FloatPlan | None:
        """For `put_floats`: the base slots read; the tests of int inputs against constants grouped by
        input: (its slot, the float edges of all its tests then inf, per stretch and test the answer
        as a number, the last row for null: the default's number or NaN, the output columns, the
        steps); the float steps: (output, `Compiled.floats`, slots, the default's number or None, the
        step). None unless every step is one of these, an output read by no other step, whose inputs
        are int64 or float64 base columns."""
        tests: dict[int, list[tuple[int, Intervals, float, int]]] = {}
        steps: list[_FloatStep] = []
        for i, st in enumerate(self.steps):
            c = st.compiled
            if st.output < 0 or not all(s < len(base_dtypes) and base_dtypes[s] in _IMAGES for s in st.slots):
                return None
            if c.floats is not None:
                fill = None if st.default.stored is None else st.default.number
                steps.append((st.output, c.floats, st.slots, fill, i))
            elif c.bound is not None and all(abs(e) < _F53 for e in _edges(c.bound[1])):  # (exact as floats)
                tests.setdefault(st.slots[c.bound[0]], []).append((st.output, c.bound[1], st.default.number, i))
            else:
                return None
        groups = []
        for slot, group in tests.items():
            edges = sorted({e for _, where, _, _ in group for e in _edges(where)})
            table = np.array([[*_rounded(_stretches(where, edges), self.f32[i]), fill] for _, where, fill, i in group],
                             dtype=np.float64).T
            outputs = [p for p, _, _, _ in group]
            cols: Any = (slice(outputs[0], outputs[0] + len(outputs))
                         if outputs == list(range(outputs[0], outputs[0] + len(outputs))) else np.array(outputs))
            # (NaN sorts after inf: a null row finds the last one)
            groups.append((slot, np.array([*edges, math.inf], dtype=np.float64), np.ascontiguousarray(table), cols,
                           tuple(i for _, _, _, i in group)))
        slots = tuple(sorted({s for st in self.steps for s in st.slots}))
        return slots, tuple(groups), tuple(steps)

    def _python_plan(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """For `python_floats`, `_float_plan`'s with answers and places as `to_dict` serves them: per test
        group (its slot, its float edges then inf, its edges as ints, per stretch and test the answer
        as a Python bool then per test the default's `python` for null, as an object array and as
        lists, and its tests' indexes in `outputs`); per float step (its function, its slots, whether
        its output is float32, its default's `python`, its index in `outputs`)."""
        where = {si: k for k, (_, si) in enumerate(self.outputs)}
        tests = []
        for slot, cut, table, _, steps in self._tests:
            objects = np.empty(table.shape, dtype=object)
            objects[:-1] = (table[:-1] != 0).tolist()
            objects[-1] = [self.steps[i].default.python for i in steps]
            tests.append((slot, cut, [int(e) for e in cut[:-1]], objects, objects.tolist(),
                          tuple(where[i] for i in steps)))
        floats = tuple((fn, slots, self.dtypes[p] is DType.FLOAT32, self.steps[i].default.python, where[i])
                       for p, fn, slots, _, i in self._float_steps)
        return tuple(tests), floats

    def python_floats(self, column: Callable[[int], Sequence[Any]], same: Sequence[int], n: int
                      ) -> tuple[list[list[Any]], list[list[int] | None]]:
        """Per output (in `outputs` order): its values as `python` serves them of `run`'s column, and its
        status codes (None: all PRESENT), computed as `put_floats` computes them: `column(slot)` gives
        base column `slot`'s `n` plain values with defaults in place and None where null
        (`Kernel.python`'s), converted to float64 (`_image`). The tests of an input in `same` (one int
        in every row) are looked up once. Only when `floats` is set."""
        values: list[Any] = [None] * len(self.outputs)
        codes: list[Any] = [None] * len(self.outputs)
        images: dict[int, np.ndarray] = {}
        for slot, cut, edges, objects, rows, places in self._py_tests:
            if slot in same:
                for k, v in zip(places, rows[bisect.bisect_right(edges, column(slot)[0])], strict=True):
                    values[k] = [v] * n
                continue
            image = images[slot] = _image(column(slot), n, slot in self._int_slots)
            at = cut.searchsorted(image, "right")
            null = at == len(cut)
            null_codes = np.where(null, NULL_VALUE, PRESENT).tolist() if np.count_nonzero(null) else None
            for k, vals in zip(places, objects.take(at, 0).T.tolist(), strict=True):
                values[k] = vals
                codes[k] = null_codes
        if self.quiet:
            self._python_float_steps(values, codes, column, images, n)
        else:
            with np.errstate(all="ignore"):
                self._python_float_steps(values, codes, column, images, n)
        return values, codes

    def _python_float_steps(self, values: list[Any], codes: list[Any], column: Callable[[int], Sequence[Any]],
                            images: dict[int, np.ndarray], n: int) -> None:
        for fn, slots, float32, fill, k in self._py_floats:
            args = []
            for s in slots:
                image = images.get(s)
                if image is None:
                    image = images[s] = _image(column(s), n, s in self._int_slots)
                args.append((image, None))
            result = fn(args)[0]
            if result.shape != (n,):  # (a constant)
                result = np.broadcast_to(result, (n,))
            if float32:  # (as `python` serves it)
                result = result.astype(np.float32).astype(np.float64)
            vals = values[k] = result.tolist()
            if (total := sum(vals)) != total:  # a NaN (or +inf and -inf): null where NaN, served as the default
                null = np.isnan(result)
                if np.count_nonzero(null):
                    codes[k] = np.where(null, NULL_VALUE, PRESENT).tolist()
                    for j in np.flatnonzero(null).tolist():
                        vals[j] = fill

    def refuse_text(self) -> None:
        """Raise UserInputError naming the derived outputs with text values (`text_outputs`)."""
        raise UserInputError(f"{', '.join(self.text_outputs)}: text features have no number for a model vector; "
                             "read them with to_dict(), to_arrow() or columns, or leave them out of the features a "
                             "model takes")

    def run(self, inputs: Mapping[int, Column], n: int) -> list[Column]:
        """Every step's raw result (values, null) for `n` rows (see the class docstring)."""
        if self.quiet:
            return self._run(inputs, n)
        with np.errstate(all="ignore"):  # overflow and the like: results are defined, not warned
            return self._run(inputs, n)

    def _run(self, inputs: Mapping[int, Column], n: int) -> list[Column]:
        slots: dict[int, Column] = dict(inputs)
        out: list[Column] = []
        n_base = self.n_base
        for i, st in enumerate(self.steps):
            values, null = st.compiled.run([slots[s] for s in st.slots], n)
            out.append((values, null))
            fill = self._fills[i]
            if fill is not None and null is not None:  # readers see the default where it is null
                slots[n_base + i] = (np.where(null, fill, values), None)
            else:
                slots[n_base + i] = (values, null)
        return out

    def put_floats(self, out: np.ndarray, column: Callable[[int], np.ndarray]) -> list[Any]:
        """Every step's column into the float64 matrix `out` as `put_numbers` puts it with defaults, from
        float images: `column(slot)`, base column `slot` as float64 with its default where it is not
        PRESENT and NaN where it is null, as `Kernel.numpy(fill_defaults=True)` holds it. Only when
        `floats` is set; a test of an int input is one lookup for all the tests of that input.
        Returns what `float_nulls` reads (arrays of its own, not `out`'s)."""
        columns = {s: column(s) for s in self._float_slots}
        kept = []
        for slot, cut, table, cols, _ in self._tests:
            at = cut.searchsorted(columns[slot], "right")
            out[:, cols] = table.take(at, 0)
            kept.append(at)
        if self.quiet:
            self._put_float_steps(out, columns, kept)
        else:
            with np.errstate(all="ignore"):
                self._put_float_steps(out, columns, kept)
        return kept

    def _put_float_steps(self, out: np.ndarray, columns: Mapping[int, np.ndarray], kept: list[Any]) -> None:
        for p, fn, slots, fill, i in self._float_steps:
            values = fn([(columns[s], None) for s in slots])[0]
            if self.f32[i]:
                values = as_f32(values)
            out[:, p] = values if fill is None else np.where(np.isnan(values), fill, values)
            kept.append(values if values.base is None else values.copy())  # (an input as it is: `column`'s)

    def float_nulls(self, kept: Sequence[Any]) -> list[Any]:
        """Per step, its null mask (None: no nulls), from what `put_floats` returned: a test is null
        where its input is (it found the last stretch), a float step where its value is NaN."""
        nulls: list[Any] = [None] * len(self.steps)
        for (_, cut, _, _, steps), at in zip(self._tests, kept[:len(self._tests)], strict=True):
            null = at == len(cut)
            for i in steps:
                nulls[i] = null if null.any() else None
        for (*_, i), values in zip(self._float_steps, kept[len(self._tests):], strict=True):
            null = np.isnan(values)
            nulls[i] = null if null.any() else None
        return nulls

    def run_one(self, inputs: Mapping[int, Any]) -> list[Any] | None:
        """Every step's value for one row, in plain Python (None: null), from the base columns the steps
        read (`needed`) as plain values (defaults in place, None where null, as `run`'s inputs); the
        same values as `run` on a row of one (the property tests hold them to it). None when a step
        has no one-row form (`has_one`) or meets a value only `run` computes like numpy."""
        if not self.has_one:
            return None
        slots = dict(inputs)
        out: list[Any] = []
        n_base = self.n_base
        try:
            for i, st in enumerate(self.steps):
                v = self._ones[i]([slots[s] for s in st.slots])  # type: ignore[misc]  # (has_one)
                out.append(v)
                slots[n_base + i] = self._fills[i] if v is None else v  # readers see the default where null
        except _NoScalar:
            return None
        return out

    def one_columns(self, results: Sequence[Any]) -> list[Column]:
        """`run_one`'s results as `run`'s columns of one row (a null holds a placeholder)."""
        out: list[Column] = []
        for st, v in zip(self.steps, results, strict=True):
            kind = st.compiled.kind
            if v is None:
                out.append((np.array([_PLACEHOLDER[kind]], dtype=_DTYPES[kind]), _NULL_ONE))
            else:
                out.append((np.array([v], dtype=_DTYPES[kind]), None))
        return out

    # ---- output forms of one derived column (values, null) ----------------------------------------
    @staticmethod
    def statuses(null: Any, n: int) -> np.ndarray:
        """PRESENT where computed, NULL_VALUE where null."""
        st = np.full(n, PRESENT, dtype=np.uint8)
        if null is not None:
            st[null] = NULL_VALUE
        return st

    def put_numbers(self, out: np.ndarray, position: int, step: int, column: Column, fill_defaults: bool) -> None:
        """Into column `position` of the float64 matrix `out`, as a model vector holds it: bool 0/1,
        timestamps as seconds; null -> the default (or NaN)."""
        values, null = column
        if self.f32[step]:
            values = as_f32(values)
        out[:, position] = values * 1e-6 if self.steps[step].compiled.kind is Kind.TS else values
        if null is not None:
            out[null, position] = self.steps[step].default.number if fill_defaults else np.nan

    @staticmethod
    def put_statuses(out: np.ndarray, position: int, null: Any) -> None:
        """Into column `position` of the uint8 matrix `out`: `statuses`."""
        out[:, position] = PRESENT
        if null is not None:
            out[null, position] = NULL_VALUE

    def python(self, step: int, dtype: DType, column: Column) -> list[Any]:
        """As `to_dict` serves it: plain Python values, null -> the default (None without one)."""
        values, null = column
        kind = self.steps[step].compiled.kind
        if kind is Kind.TS:
            vals = [EPOCH + timedelta(microseconds=v) for v in values.tolist()]
        elif dtype is DType.FLOAT32:
            vals = as_f32(values).tolist()
        else:
            vals = values.tolist()
        if null is not None:
            fill = self.steps[step].default.python
            for j in np.flatnonzero(null).tolist():
                vals[j] = fill
        return vals

    def array(self, step: int, dtype: DType, column: Column) -> np.ndarray:
        """As typed arrays hold it (`DType.numpy_dtype`): null -> the default (or the dtype's null)."""
        values, null = column
        kind = self.steps[step].compiled.kind
        arr = values.astype("datetime64[us]") if kind is Kind.TS else values.astype(dtype.numpy_dtype)
        if null is not None:
            arr = arr.copy() if arr is values else arr
            arr[null] = self.steps[step].default.array
        return arr
