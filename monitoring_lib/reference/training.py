"""Training data read from a table, query or file, fitted into a reference profile and stored."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
from psycopg import sql

from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.errors import MonitoringError, SourceError
from monitoring_lib.reference.fit import fit_reference
from monitoring_lib.results.endpoints import ensure_endpoint
from monitoring_lib.results.profiles import save_profile
from monitoring_lib.sql_common import qualified


def read_training_data(url: str, *, table: str | None = None, query: str | None = None,
                       file: Path | None = None) -> tuple[pd.DataFrame, str]:
    """Returns the frame and a description of where it came from, stored with the profile."""
    if file is not None:
        file = Path(file)
        if not file.exists():
            raise MonitoringError(f"training data file {file} does not exist")
        if file.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(file), f"file:{file.name}"
        if file.suffix.lower() in {".csv", ".txt"}:
            return pd.read_csv(file), f"file:{file.name}"
        raise MonitoringError(f"training data file {file}: use .parquet or .csv")
    if table:
        text = sql.SQL("SELECT * FROM {}").format(qualified(table)).as_string()
        where = f"table:{table}"
    elif query:
        text, where = query, "query"
    else:
        raise MonitoringError("give one of a table, a query or a file of training data")
    try:
        with adbc.connect(url) as aconn, aconn.cursor() as cur:
            cur.execute(text)
            return cur.fetch_arrow_table().to_pandas(), where
    except adbc.ProgrammingError as exc:
        raise SourceError(f"reading training data ({where}) failed: {str(exc).splitlines()[0]}") from exc


def fit_and_store(url: str, cfg: EndpointConfig, *, table: str | None = None, query: str | None = None,
                  file: Path | None = None, frame: pd.DataFrame | None = None,
                  model_version: str | None = None) -> ReferenceProfile:
    if frame is not None:
        df, where = frame, "frame"
    else:
        df, where = read_training_data(url, table=table, query=query, file=file)
    if df.empty:
        raise MonitoringError(f"training data from {where} has no rows")
    missing = [c for c in cfg.source.features if c not in df]
    if missing:
        raise SourceError(f"training data from {where} lacks configured feature column(s): {missing}")
    with connect(url) as conn:
        version = model_version or ensure_endpoint(conn, cfg)
        stored = save_profile(conn, fit_profile(df, cfg, where, version))
        conn.commit()
    return stored


def fit_profile(df: pd.DataFrame, cfg: EndpointConfig, where: str, model_version: str) -> ReferenceProfile:
    """The profile of `df` for `model_version`, not yet stored (the caller's transaction stores it)."""


    label = None
    if cfg.labels is not None and cfg.labels.label_column in df:
        label = df[cfg.labels.label_column]
    profile = fit_reference(df, cfg, source=where, label=label)
    if profile.model_version != model_version:
        profile = dataclasses.replace(profile, model_version=model_version)
    return profile
