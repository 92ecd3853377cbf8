"""`mlmon validate-config`: every file, every field, and every column against the live database."""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg

from monitoring_lib.applications import kpi_reads_type
from monitoring_lib.config import EndpointConfig, config_dir, config_files, load_each
from monitoring_lib.db import connect
from monitoring_lib.source import describe_relation, describe_source
from monitoring_lib.sql_common import NUMBER_OR_BOOL_TYPES, NUMBER_TYPES, qualified

TIME_TYPES = {"timestamptz", "timestamp", "timestamp with time zone", "timestamp without time zone"}


def check_columns(conn: psycopg.Connection, cfg: EndpointConfig) -> list[str]:
    """Problems as `file: field: reason` for columns missing from, or mistyped in, the live source."""
    file, src = cfg.source_file, cfg.source
    relation = src.table or "source.sql"
    try:
        columns = describe_source(conn, src)
    except psycopg.Error as exc:
        conn.rollback()
        field = "source.table" if src.table else "source.sql"
        return [f"{file}: {field}: {str(exc).strip().splitlines()[0]}"]
    problems = []

    def need(field: str, column: str | None, kinds: Collection[str] | None = None, what: str = "") -> None:
        if column is None:
            return
        if column not in columns:
            problems.append(f"{file}: {field}: column '{column}' not found in {relation}")
        elif kinds is not None and columns[column] not in kinds:
            problems.append(f"{file}: {field}: column '{column}' is {columns[column]}, expected {what}")

    need("source.timestamp_column", src.timestamp_column, TIME_TYPES, "a timestamp")
    need("source.request_id_column", src.request_id_column)
    for name in src.numeric_features:
        need("source.numeric_features", name, NUMBER_TYPES, "a numeric type")
    for name in src.categorical_features:
        need("source.categorical_features", name)
    if cfg.compute == "database" or cfg.scale_out.feature_group_size:  # SQL aggregates cast it to float8
        need("source.prediction_column", src.prediction_column, NUMBER_TYPES,
             "a numeric type with compute: database or feature groups")
    elif cfg.labels is not None:  # performance metrics compare it with the labels as numbers
        need("source.prediction_column", src.prediction_column, NUMBER_OR_BOOL_TYPES,
             "a numeric or boolean type with labels")
    else:
        need("source.prediction_column", src.prediction_column)
    if cfg.labels is not None:
        need("performance.bucket_column", cfg.performance.bucket_column, NUMBER_OR_BOOL_TYPES,
             "a numeric or boolean type")
    need("source.latency_column", src.latency_column, NUMBER_TYPES, "a numeric type")
    need("source.error_column", src.error_column)
    need("source.model_version_column", src.model_version_column)
    for kpi in cfg.kpis:  # the numeric columns are checked above; the error column is aggregated as its flag
        need(f"kpis.{kpi.name}.column", kpi.column,
             NUMBER_OR_BOOL_TYPES if kpi_reads_type(cfg, kpi.column) else None, "a numeric or boolean type")
    if cfg.labels is not None:
        try:
            label_cols = describe_relation(conn, qualified(cfg.labels.table))
        except psycopg.Error as exc:
            conn.rollback()
            return [*problems, f"{file}: labels.table: {str(exc).strip().splitlines()[0]}"]
        wanted = (("labels.join_key", cfg.labels.join_key), ("labels.label_column", cfg.labels.label_column),
                  ("labels.timestamp_column", cfg.labels.timestamp_column))
        for field, column in wanted:
            if column is not None and column not in label_cols:
                problems.append(f"{file}: {field}: column '{column}' not found in {cfg.labels.table}")
        label_type = label_cols.get(cfg.labels.label_column)
        if label_type is not None and label_type not in NUMBER_OR_BOOL_TYPES:
            problems.append(f"{file}: labels.label_column: column '{cfg.labels.label_column}' is {label_type},"
                            " expected a numeric or boolean type")
    return problems


def validate_configs(
    directory: str | Path | None,
    *,
    check_database: bool,
    database: Callable[[], AbstractContextManager[str]],
) -> tuple[list[str], int]:
    directory = Path(directory) if directory else config_dir()
    files = config_files(directory) if directory.is_dir() else []
    if directory.is_dir() and not files:
        return [f"{directory}: (directory): no *.yaml config files found"], 0
    configs, problems = load_each(directory)
    valid = list(configs.values())
    if check_database and valid:
        with database() as url, connect(url) as conn:
            for cfg in valid:
                problems += check_columns(conn, cfg)
    return problems, len(files)
