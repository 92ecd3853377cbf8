"""The window's reconstruction error in one aggregate scan (`drift.multivariate`).

Each feature reads as the memory mode reads it (`as_float`) and becomes the z-score `standardise`
gives (`_z`). The row's error is the same formula the memory mode evaluates
(`drift.multivariate.row_errors`); the scan returns the row count and the sum: two numbers, however
many rows the window holds.
"""

from __future__ import annotations

import sys
from datetime import datetime

import psycopg
from psycopg import sql

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.multivariate import Z_CAP, WindowError, uses_residual
from monitoring_lib.drift.profile import MultivariateProfile
from monitoring_lib.sql_common import Params, as_float, window_rows


def _z(name: str, pgtype: str, centre: float, scale: float, p: Params) -> sql.Composed:
    """z = (x - centre) / scale, capped at +-Z_CAP; 0 for a missing or non-finite x, as `standardise` gives.

    One BETWEEN decides the usual case (NaN, infinities and NULL fail it); only values beyond the
    cap's bounds reach the other branches, so no subtraction or division can overflow.
    """
    v = as_float(name, pgtype)
    top = sys.float_info.max
    lo, hi = max(centre - Z_CAP * scale, -top), min(centre + Z_CAP * scale, top)
    return sql.SQL(
        "CASE WHEN {v} BETWEEN {lo} AND {hi} THEN ({v} - {centre}) / {scale}"
        " WHEN {v} > {hi} AND {v} < 'Infinity'::float8 THEN {cap}"
        " WHEN {v} < {lo} AND {v} > '-Infinity'::float8 THEN -{cap} ELSE 0::float8 END"
    ).format(v=v, lo=p(lo, "::float8"), hi=p(hi, "::float8"), centre=p(centre, "::float8"),
             scale=p(scale, "::float8"), cap=p(Z_CAP, "::float8"))


def _squared_projections(vectors: tuple[tuple[float, ...], ...], zs: list[sql.Identifier], p: Params) -> sql.Composed:
    """sum over vectors of (v . z)^2, each weight a bound parameter."""
    terms = [sql.SQL("power({}, 2)").format(sql.SQL(" + ").join(
        sql.SQL("{} * {}").format(p(w, "::float8"), z) for w, z in zip(vector, zs, strict=True)))
        for vector in vectors]
    return sql.SQL(" + ").join(terms) if terms else sql.SQL("0::float8")


def error_query(cfg: EndpointConfig, model: MultivariateProfile, types: dict[str, str],
                start: datetime, end: datetime) -> tuple[sql.Composed, dict]:
    p = Params()
    names = [sql.Identifier(f"z{i}") for i in range(len(model.features))]
    zs = [sql.SQL("{} AS {}").format(_z(f, types[f], m, s, p), name)
          for f, m, s, name in zip(model.features, model.centre, model.scale, names, strict=True)]
    if uses_residual(model):
        error, uses = _squared_projections(model.residual, names, p), len(model.residual)
    else:
        squares = sql.SQL(" + ").join(sql.SQL("power({}, 2)").format(z) for z in names)
        error = sql.SQL("GREATEST({} - ({}), 0)").format(squares, _squared_projections(model.components, names, p))
        uses = len(model.components) + 1
    # PostgreSQL inlines the subquery, evaluating each z once per use; past two uses, computing the z
    # once per row (OFFSET 0 keeps the subquery) costs less than the parallel scan inlining allows
    fence = sql.SQL(" OFFSET 0") if uses > 2 else sql.SQL("")
    query = sql.SQL("SELECT count(*), sum({error}) FROM (SELECT {zs} FROM {rows}{fence}) AS standardised").format(
        error=error, zs=sql.SQL(", ").join(zs), rows=window_rows(cfg, p, start, end), fence=fence)
    return query, p.values


def error_in_database(conn: psycopg.Connection, cfg: EndpointConfig, model: MultivariateProfile,
                      types: dict[str, str], start: datetime, end: datetime) -> WindowError:
    query, params = error_query(cfg, model, types, start, end)
    rows, total = conn.execute(query, params).fetchone()
    return WindowError(rows=int(rows), error_sum=0.0 if total is None else float(total))
