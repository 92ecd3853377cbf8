"""Seeded randomized differential test: `summaries_in_database` against `summarise_frame` on the same rows.

Every case draws a reference frame (fitted with `fit_reference`) and an interval from a random shape per column,
stores the interval (plus rows just outside [START, END), which must not count) in a PostgreSQL table, and
compares the in-database summaries with the in-memory ones of the same window, read two ways:

- through Arrow (`read_arrow_frame`), NULL and NaN kept apart, against `non_finite_as_null=False`;
- as the in-memory pipeline reads it (`read_window` + `normalise_frame`), against `non_finite_as_null=True`.

Counts are compared exactly; sums, min, max, mean, std and quantiles within 1e-9 relative, and the drift results
built on them (`assert_same_summary`, `assert_same_drift`). Where those fixed tolerances do not hold for any
summation order the same checks are judged by the conditioning of each number instead (`assert_summary`): a sum
of (x - shift) against the size of its terms also when their squares overflow or underflow, a mean against its
sum's tolerance, a std of nearly equal values against how far rounding of sum_sq moves the variance, and NaN
equal to NaN. Some cases also run with a snapshot twin (the quantile scan split between the sessions) or with
`percentile_cont` quantiles (`_MAX_FETCH` lowered).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from monitoring_lib.compute.database import scan as pushdown
from monitoring_lib.compute.database.scan import summaries_in_database
from monitoring_lib.compute.database.snapshot import beside
from monitoring_lib.compute.memory.bad_rows import normalise_frame
from monitoring_lib.compute.memory.summaries import summarise_frame
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import NumericProfile, ReferenceProfile
from monitoring_lib.drift.summaries import ColumnSummary
from monitoring_lib.reference.fit import fit_reference
from monitoring_lib.source import read_window
from tests.parity.test_pushdown import (
    END,
    ODD,
    REL,
    START,
    assert_same_drift,
    assert_same_summary,
    close,
    columns_of,
    read_arrow_frame,
)

# 0-16 and 248 cover every shape below between them (248: a two-row window, an empty-string category).
# 174 and 176 found two disagreements, since fixed:
# - 174: a finite sentinel (1e300) in one column sends the moments scan to its numeric form (`overflow_safe`),
#   which took (x - shift) of each float8's shortest decimal text rather than of the float8: the prediction's
#   sum over values one ulp from the shift came out 6e-17 instead of 5.551115123125783e-17.
# - 176: a float8 categorical column with codes of 16 or more significant digits: `category_key` keyed
#   1234567890123456.0 as '1234567890123460' (float8 -> numeric keeps 15 digits) and 1234567890123456.5 as
#   '1.2345678901234565e+15'; `category_counts` as '1234567890123456' and '1234567890123456.5'.
SEEDS = (*range(17), 248, 174, 176)
# Finite values far beyond any fitted edge, on both sides of zero, down to the subnormals.
EXTREMES = (1e300, -1e300, 1e-300, -1e-300, 5e-324, -5e-324, 2.2250738585072014e-308, 0.0, -0.0, 1e15, -1e15)
NUMERIC_TYPES = ("float8", "float8", "float8", "int4", "int8", "float4", "numeric")
REFERENCE_SHAPES = ("normal", "lognormal", "ties", "constant", "offset", "tiny", "huge")
INTERVAL_SHAPES = ("like", "like", "shifted", "ties", "edges", "extreme", "far", "constant", "sparse",
                   "all_null", "all_nan", "non_finite")
CATEGORICAL_TYPES = ("text", "text", "int4", "int8", "bool", "float8")
TEXTS = ("north", "south", "east", "", " ", "NaN", "None", "0", "1.0", "é €", "North")
UNSEEN_TEXTS = ("west", "zzz", "nan", "true", " north", "😀", "NORTH")
FLOAT_CODES = (1.0, 2.0, 3.0, 2.5, -0.0, 0.1, 1e-5, 12345.678, -7.0)
# float codes of 16 or more significant digits, whole or not, and whole ones beyond int64
LONG_FLOAT_CODES = (1234567890123456.0, 2.0**53, 1234567890123456.5, 4.5e15 + 0.5, 2.0**70, -1e300)
INT8_CODES = (2**40 + 1, -(2**50) + 3, 7, 0, 2**52 + 1)
INT_RANGE = {"int4": (-(2**31), 2**31 - 1), "int8": (-(2**63), 2**63 - 1)}


@dataclass
class Column:
    name: str
    sqltype: str
    kind: str  # numeric | categorical
    reference: list  # reference values, None for a null
    reference_shape: str = ""
    shape: str = ""  # the interval's shape, drawn when the profile is known
    interval: list = field(default_factory=list)


@dataclass
class Case:
    seed: int
    cfg: EndpointConfig
    columns: list[Column]
    band_k: float
    rows: int
    twin: bool
    max_fetch: int | None

    def describe(self, name: str) -> str:
        col = next((c for c in self.columns if c.name == name), None)
        ref = f", reference shape {col.reference_shape!r}" if col and col.reference_shape else ""
        what = f"{col.sqltype} column, {col.kind} feature{ref}, interval shape {col.shape!r}" if col else "?"
        return f"seed {self.seed}, column {name!r} ({what}), {self.rows} rows, band_k {self.band_k}"


def as_sql_value(value: float | None, sqltype: str) -> float | int | None:
    """The value as the column type stores it: integers rounded and clipped (non-finite as NULL), float4 rounded."""
    if value is None:
        return None
    if sqltype in INT_RANGE:
        if not math.isfinite(value):
            return None
        lo, hi = INT_RANGE[sqltype]
        return min(max(int(round(value)), lo), hi)
    if sqltype == "float4":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(np.float32(value))
    return float(value)


def reference_numeric(rng: np.random.Generator, shape: str, n: int) -> np.ndarray:
    if shape == "normal":
        return rng.normal(rng.choice([0.0, 10.0, -250.0, 1e6]), rng.choice([1e-3, 1.0, 40.0]), n)
    if shape == "lognormal":
        return rng.lognormal(rng.uniform(0, 6), rng.uniform(0.3, 2.5), n)
    if shape == "ties":
        lo = int(rng.integers(-5, 100))
        return rng.integers(lo, lo + int(rng.integers(1, 12)), n).astype(float)
    if shape == "constant":
        return np.full(n, rng.choice([0.0, 7.25, -3.0, 1e10]))
    if shape == "offset":  # far from zero against its spread: (x - shift) keeps few of the digits of x
        loc = float(rng.choice([1e6, 1e12, 1e17]))
        return loc + rng.normal(0, loc * 1e-13, n)
    if shape == "tiny":
        return rng.uniform(0, 1, n) * 1e-300
    return rng.normal(1e200, 1e199, n)  # huge: squared deviations overflow float8


def interval_numeric(rng: np.random.Generator, shape: str, n: int, col: NumericProfile, band_k: float,
                     reference: np.ndarray, sqltype: str) -> list[float | None]:
    edges = np.asarray(col.edges)
    low, high = col.mean - band_k * col.std, col.mean + band_k * col.std
    marks = [*edges, low, high, col.mean]
    marks += [math.nextafter(m, d) for m in marks for d in (-math.inf, math.inf)]
    # finite and far from float max: a sum of a few thousand of them cannot overflow in any order
    marks = [m for m in marks if abs(m) <= 1e300]
    spread = col.std or abs(col.mean) or 1.0
    width = (edges[-1] - edges[0]) or spread
    values: list[float | None]
    if shape == "like":
        noise = rng.choice([0.0, 0.01, 1.0]) * (col.std if math.isfinite(col.std) else 0.0)
        values = list(rng.choice(reference, n) + rng.normal(0, 1, n) * noise)
    elif shape == "shifted":
        values = list(rng.choice(reference, n) + rng.choice([-6.0, -2.0, 2.0, 6.0]) * spread)
    elif shape == "ties":
        distinct = rng.choice([*marks, *rng.choice(reference, 4)], int(rng.integers(1, 6)))
        values = list(rng.choice(distinct, n))
    elif shape == "edges":
        values = list(rng.choice(marks, n))
    elif shape == "extreme":
        values = [float(rng.choice(EXTREMES)) if rng.random() < 0.3 else float(rng.choice(reference))
                  for _ in range(n)]
    else:
        values = sparse_shape(rng, shape, n, reference, marks, edges, width)
    return with_specials(rng, values, shape in ("like", "shifted", "ties", "edges", "extreme", "far"), sqltype)


def sparse_shape(rng: np.random.Generator, shape: str, n: int, reference: np.ndarray, marks: list[float],
                 edges: np.ndarray, width: float) -> list[float | None]:
    """The shapes far, constant, sparse, all_null, all_nan and non_finite."""
    if shape == "far":
        values = list(edges[-1] + rng.lognormal(0, 2, n) * width)
        below = rng.random(n) < rng.uniform(0, 1)
        return [float(edges[0] - (v - edges[-1])) if b else float(v) for v, b in zip(values, below, strict=True)]
    if shape == "constant":
        return [float(rng.choice(marks))] * n
    if shape == "sparse":
        return [float(rng.choice(reference)) if rng.random() < 0.1 else None for _ in range(n)]
    if shape == "all_null":
        return [None] * n
    if shape == "all_nan":
        return [math.nan] * n
    return [float(rng.choice([math.nan, math.inf, -math.inf])) for _ in range(n)]  # non_finite


def with_specials(rng: np.random.Generator, values: list, dense: bool, sqltype: str) -> list:
    """A dense shape's values with NULL, NaN and ±Infinity sprinkled in (in 60% of columns), as stored."""
    values = [None if v is None else float(v) for v in values]
    if values and dense and rng.random() < 0.6:
        share = rng.uniform(0, 0.3)
        for i in np.flatnonzero(rng.random(len(values)) < share):
            values[i] = [None, math.nan, math.inf, -math.inf][int(rng.integers(0, 4))]
    return [as_sql_value(v, sqltype) for v in values]


def categorical_values(rng: np.random.Generator, sqltype: str) -> tuple[list, list]:
    """(reference pool, unseen pool) of a categorical column of that SQL type."""
    if sqltype == "text":
        return [str(t) for t in rng.choice(TEXTS, int(rng.integers(1, 7)), replace=False)], list(UNSEEN_TEXTS)
    if sqltype == "int4":
        lo = int(rng.integers(-5, 5))
        return list(range(lo, lo + int(rng.integers(1, 8)))), [lo - 1, lo + 20, 2**31 - 1, -(2**31)]
    if sqltype == "int8":
        return list(INT8_CODES), [2**40, 8, -1]
    if sqltype == "bool":
        return [True, False], []
    codes = [*FLOAT_CODES, *(LONG_FLOAT_CODES if rng.random() < 0.2 else ())]
    return codes, [7.0, 0.5, 1e20, 1e-7, -1.5, math.inf, -math.inf]


def interval_categorical(rng: np.random.Generator, shape: str, n: int, pool: list, unknown: list,
                         shares: dict[str, tuple[float, float]] | None = None) -> list:
    """A categorical interval column of a drawn shape; `shares`: per shape, the share of unknown values and nulls."""
    if shape == "all_null":
        return [None] * n
    if shape == "one":
        return [(pool + unknown)[int(rng.integers(0, len(pool) + len(unknown)))]] * n
    shares = shares or {"like": (0.05, 0.05), "unseen": (0.6, 0.1), "sparse": (0.05, 0.8)}
    p_unseen, p_null = shares[shape]
    return draw_categories(rng, n, pool, unknown, p_unseen, p_null)


def draw_categories(rng: np.random.Generator, n: int, pool: list, unknown: list, p_unseen: float,
                    p_null: float) -> list:
    """n values: NULL with p_null, one of `unknown` with p_unseen, else one of `pool`."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < p_null:
            out.append(None)
        elif r < p_null + p_unseen and unknown:
            out.append(unknown[int(rng.integers(0, len(unknown)))])
        else:
            out.append(pool[int(rng.integers(0, len(pool)))])
    return out


def reference_column(values: list, sqltype: str) -> pd.Series:
    """The reference as a training frame holds it: floats with NaN, integers as int64 (nullable if needed)."""
    if sqltype in INT_RANGE:
        return pd.Series(values, dtype="Int64" if None in values else "int64")
    if sqltype == "bool":
        return pd.Series(values, dtype=object if None in values else bool)
    if sqltype == "text":
        return pd.Series(values, dtype=object)
    return pd.Series([math.nan if v is None else v for v in values], dtype="float64")


def make_cfg(numeric: list[str], categorical: list[str], bins: int, band_k: float) -> EndpointConfig:
    return EndpointConfig.model_validate({
        "endpoint_id": "pushdown-random", "project": "p", "model": {"name": "m", "version": "1"},
        "source": {"table": "public.inference", "timestamp_column": "ts", "numeric_features": numeric,
                   "categorical_features": categorical},
        "drift": {"bins": bins, "band_k": band_k},
        "quality": {"enabled": False}, "dynatrace": {"enabled": False},
    })


def draw_case(seed: int) -> tuple[Case, ReferenceProfile]:
    rng = np.random.default_rng([20260402, seed])
    n_ref = int(rng.choice([1, 2, 5, 40, 400]))
    rows = int(rng.choice([0, 1, 2, 3, 9, 60, 400, 1500, 3000], p=[.06, .08, .08, .06, .1, .17, .2, .15, .1]))
    names = iter(["x", ODD, "k", "v3", "v4"])
    columns: list[Column] = []
    for _ in range(int(rng.integers(1, 5))):
        sqltype = str(rng.choice(NUMERIC_TYPES))
        shape = str(rng.choice(REFERENCE_SHAPES[:4] if sqltype in INT_RANGE else REFERENCE_SHAPES))
        ref = reference_numeric(rng, shape, n_ref)
        values: list[float | None] = [as_sql_value(float(v), sqltype) for v in ref]
        if n_ref > 1 and rng.random() < 0.3:  # reference nulls (the first value stays finite)
            for i in range(1, n_ref, 3):
                values[i] = None
        if sqltype == "float4" and not any(v is not None and math.isfinite(v) for v in values):
            values = [1.0] * n_ref  # a huge reference overflows float4: no finite value to fit
        columns.append(Column(next(names), sqltype, "numeric", values, shape))
    cat_names = iter(["region", 'zone "é"', "code", "flag"])
    for _ in range(int(rng.integers(0, 4))):
        sqltype = str(rng.choice(CATEGORICAL_TYPES))
        pool, _unseen = categorical_values(rng, sqltype)
        weights = rng.dirichlet(np.ones(len(pool)))
        ref = [pool[i] for i in rng.choice(len(pool), n_ref, p=weights)]
        if n_ref > 2 and rng.random() < 0.3:
            ref[-1] = None
        columns.append(Column(next(cat_names), sqltype, "categorical", ref))
    with_prediction = rng.random() < 0.75
    if with_prediction:
        columns.append(Column("prediction", "float8", "numeric", list(rng.normal(0.5, 0.1, n_ref)), "normal"))
    numeric = [c.name for c in columns if c.kind == "numeric" and c.name != "prediction"]
    categorical = [c.name for c in columns if c.kind == "categorical"]
    if not numeric and not categorical:
        categorical.append("region")
        columns.append(Column("region", "text", "categorical", ["north"] * n_ref))
    band_k = float(rng.choice([0.0, 0.5, 1.0, 3.0]))
    cfg = make_cfg(numeric, categorical, int(rng.choice([2, 3, 5, 8, 20, 50])), band_k)
    frame = pd.DataFrame({c.name: reference_column(c.reference, c.sqltype) for c in columns})
    profile = fit_reference(frame, cfg, source="random")

    for c in columns:
        col = profile.column(c.name)
        if c.kind == "numeric":
            assert isinstance(col, NumericProfile)
            c.shape = str(rng.choice(INTERVAL_SHAPES))
            finite = np.asarray([v for v in c.reference if v is not None and math.isfinite(v)], dtype=float)
            c.interval = interval_numeric(rng, c.shape, rows, col, band_k, finite, c.sqltype)
        else:
            pool, unseen = categorical_values(rng, c.sqltype)
            pool = sorted({v for v in c.reference if v is not None}, key=repr) or pool
            c.shape = str(rng.choice(["like", "like", "unseen", "sparse", "one", "all_null"]))
            unknown = [*unseen, *([math.nan] if c.sqltype == "float8" else [])]
            c.interval = interval_categorical(rng, c.shape, rows, pool, unknown)
    max_fetch = int(rng.choice([0, 1, 10, 100])) if seed % 5 == 2 else None
    return Case(seed, cfg, columns, band_k, rows, twin=seed % 3 == 0, max_fetch=max_fetch), profile


def outside_value(c: Column, rng: np.random.Generator) -> object:
    """A value that would change the summaries if its row were counted."""
    if c.kind == "numeric":
        return as_sql_value(float(rng.choice([1e9, -1e9, math.nan, 3.5e6])), c.sqltype)
    return {"text": "outside", "int4": 99999, "int8": 99999, "bool": True, "float8": 99999.5}[c.sqltype]


def store(conn: psycopg.Connection, case: Case) -> None:
    rng = np.random.default_rng([case.seed, 1])
    cols = list(case.columns)
    if "prediction" not in {c.name for c in cols}:  # the window query reads it even when the profile has none
        cols.append(Column("prediction", "float8", "numeric", [], interval=list(rng.normal(0.5, 0.1, case.rows))))
    conn.execute(sql.SQL("CREATE TABLE inference (request_id text, ts timestamptz, {cols}, latency_ms float8,"
                         " error boolean)").format(cols=sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.sqltype)) for c in cols)))
    # microseconds into the window, the first and last instants of it included
    offsets = sorted(int(o) for o in rng.integers(0, 3_600_000_000, case.rows))
    if case.rows >= 2:
        offsets[0], offsets[-1] = 0, 3_599_999_999
    outside = [START - timedelta(microseconds=1), END, START - timedelta(days=1), END + timedelta(hours=1)]
    with conn.cursor().copy(sql.SQL("COPY inference FROM STDIN")) as copy:
        for i, offset in enumerate(offsets):
            copy.write_row((f"r{i}", START + timedelta(microseconds=offset), *(c.interval[i] for c in cols),
                            float(rng.gamma(2.0, 15.0)), bool(rng.random() < 0.05)))
        for j, ts in enumerate(outside):
            copy.write_row((f"out{j}", ts, *(outside_value(c, rng) for c in cols), 1.0, True))
    conn.commit()


def same(a: float | None, b: float | None, scale: float = 0.0) -> bool:
    """`close` of tests.parity.test_pushdown, with NaN equal to NaN (a moment of values whose squares overflow)."""
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL, abs_tol=REL * scale if math.isfinite(scale) else 0.0)


def term_size(s: ColumnSummary) -> float:
    """What a sum of (x - shift) near zero is judged against: sqrt(n * sum_sq) as in `assert_same_summary`, or
    where the squares overflow (1e300) or underflow (1e-300) to sum_sq, the bound n * max|x - shift|."""
    size = math.sqrt(s.n * s.sum_sq)
    if math.isfinite(size) and size > 0:
        return size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return s.n * float(max(abs(np.float64(s.min) - s.shift), abs(np.float64(s.max) - s.shift)))


def rounding(s: ColumnSummary) -> float:
    """How far rounding of sum_sq (n ulps, another summation order) moves the variance (sum_sq - sum^2/n)/(n-1)."""
    return 4 * s.n * sys.float_info.epsilon * s.sum_sq / (s.n - 1)


def well_conditioned(s: ColumnSummary) -> bool:
    """Whether `assert_same_summary`'s fixed tolerances hold whatever the summation order: finite moments, a
    variance that rounding of sum_sq moves by under 1e-9 of it, and a mean whose tolerance (|shift|) is at least
    what its sum's (the terms) allows. Else the same checks run conditioning-aware only (`assert_summary`)."""
    if any(v is not None and not math.isfinite(v) for v in (s.sum, s.sum_sq, s.mean, s.std)):
        return False
    if s.n and (abs(s.shift) * s.n < term_size(s) or term_size(s) != math.sqrt(s.n * s.sum_sq)):
        return False
    return s.n < 2 or s.std ** 2 * REL >= rounding(s)


def std_agrees(db: ColumnSummary, mem: ColumnSummary) -> bool:
    """Sample std within 1e-9 relative; or, where (sum_sq - sum^2/n) cancels (values nearly constant away from
    the shift), variances within what rounding of sum_sq by n ulps moves them: the std of equal values is 0
    from one summation order and 1e-8 of their distance to the shift from another."""
    if same(db.std, mem.std) or db.std is None or mem.std is None or not math.isfinite(mem.sum_sq):
        return same(db.std, mem.std)
    return abs(db.std ** 2 - mem.std ** 2) <= REL * mem.std ** 2 + rounding(mem)


@contextmanager
def explained(where: str, db: object, mem: object) -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}\n  database: {db}\n  memory:   {mem}") from exc


def assert_summary(case: Case, name: str, mode: str, db: ColumnSummary, mem: ColumnSummary) -> None:
    """`assert_same_summary` where its tolerances apply, and always its checks made NaN-aware, with the sum judged
    against its terms where their squares overflow and the std against rounding where it cancels (`std_agrees`)."""
    with explained(f"{mode}: {case.describe(name)}", db, mem):
        if well_conditioned(db) and well_conditioned(mem):
            assert_same_summary(db, mem)
        exact = ("name", "kind", "counts", "n", "null_count", "invalid_count", "outside_band", "unseen_count",
                 "shift")
        assert {f: getattr(db, f) for f in exact} == {f: getattr(mem, f) for f in exact}
        if not mem.n:
            assert (db.sum, db.sum_sq, db.min, db.max, db.quantiles) == (mem.sum, mem.sum_sq, None, None, {})
            return
        terms = term_size(mem)
        assert same(db.sum, mem.sum, terms), ("sum", db.sum, mem.sum, "terms", terms)
        assert same(db.sum_sq, mem.sum_sq), ("sum_sq", db.sum_sq, mem.sum_sq)
        assert same(db.min, mem.min) and same(db.max, mem.max), ("min/max", db.min, mem.min, db.max, mem.max)
        assert same(db.mean, mem.mean, max(abs(mem.shift), terms / mem.n)), ("mean", db.mean, mem.mean)
        assert std_agrees(db, mem), ("std", db.std, mem.std)
        assert db.quantiles.keys() == mem.quantiles.keys()
        assert all(same(db.quantiles[k], mem.quantiles[k]) for k in mem.quantiles), ("quantiles",)


def assert_all(case: Case, mode: str, db: dict[str, ColumnSummary], mem: dict[str, ColumnSummary],
               profile: ReferenceProfile) -> None:
    assert db.keys() == mem.keys(), (case.seed, mode, db.keys(), mem.keys())
    for name in mem:
        assert_summary(case, name, mode, db[name], mem[name])
    # A mean or std that only the conditioning-aware checks above accept (a sum of cancelling terms, a std that
    # cancels) was judged there; the drift's feature stats and prediction shift built on it are left out.
    loose = {(name, metric) for name, s in mem.items() if s.kind == "numeric"
             for metric in ("mean", "std") if not same(getattr(db[name], metric), getattr(s, metric), 1.0)}
    shift_keys = {"prediction_mean", "prediction_mean_shift"} if (
        profile.prediction is not None and (profile.prediction.name, "mean") in loose) else set()
    with explained(f"{mode}: seed {case.seed}, drift (judged above: {sorted(loose)})", "", ""):
        assert_same_drift(db, mem, profile, case.cfg, equal=same if loose else close, skip_stats=loose,
                          skip_summary=shift_keys)


def arrow_frame(db_url: str, case: Case) -> pd.DataFrame:
    """The window through Arrow, NULL and NaN apart; a float categorical column as float64, where NaN is
    missing, as the database keys it ("NaN as null") and as the in-memory pipeline reads it."""
    frame = read_arrow_frame(db_url, case.cfg)
    for c in case.columns:
        if c.kind == "categorical" and c.sqltype == "float8":
            frame[c.name] = frame[c.name].astype("float64")
    return frame


def run_case(conn: psycopg.Connection, db_url: str, seed: int, patch: Callable[[str, object], None]) -> None:
    case, profile = draw_case(seed)
    if case.max_fetch is not None:
        patch("_MAX_FETCH", case.max_fetch)
    store(conn, case)
    names = columns_of(case.cfg, profile)

    # NaN and ±Infinity reported apart as invalid, against the frame read through Arrow
    alone = summaries_in_database(conn, case.cfg, profile, START, END, case.band_k)
    frame = arrow_frame(db_url, case)
    memory = summarise_frame(frame, profile, names, case.band_k)
    assert alone.rows == len(frame) == case.rows, (seed, alone.rows, len(frame), case.rows)
    if case.rows:
        assert (alone.first_ts, alone.last_ts) == (frame["ts"].min(), frame["ts"].max()), seed
    else:
        assert alone.first_ts is None and alone.last_ts is None, seed
    assert_all(case, "invalid apart", alone.summaries, memory, profile)

    # as the pipelines see it: non-finite values as nulls, against the normalised frame of `read_window`
    df, _ = normalise_frame(read_window(db_url, case.cfg, START, END), case.cfg)
    normalised = summaries_in_database(conn, case.cfg, profile, START, END, case.band_k, non_finite_as_null=True)
    assert_all(case, "non-finite as null", normalised.summaries, summarise_frame(df, profile, names, case.band_k),
               profile)

    if case.twin:  # the quantile scan split between this session and a snapshot twin
        patch("_arrays_in_one_process", lambda _conn: True)
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with beside(conn, db_url) as side:
                assert side.parallel, seed
                split = summaries_in_database(conn, case.cfg, profile, START, END, case.band_k, beside=side)
        assert (split.rows, split.first_ts, split.last_ts) == (alone.rows, alone.first_ts, alone.last_ts), seed
        assert_all(case, "snapshot twin", split.summaries, memory, profile)
        planned = sum(1 for s in alone.summaries.values() if s.kind == "numeric" and s.n)
        assert ("quantiles_beside" in split.timings) == (planned >= 2), (seed, planned, split.timings)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_intervals_summarise_the_same_in_database_and_in_memory(conn, db_url, monkeypatch, seed):
    run_case(conn, db_url, seed, lambda name, value: monkeypatch.setattr(pushdown, name, value))
