"""The expectation suite for one interval, derived from the endpoint config and the reference profile.

Expectations are plain values (`ExpectationSpec`) so the suite can be inspected, tested and stored
without Great Expectations; `compute.memory.quality.run_quality` turns them into GX expectations. Thresholds come from
what the reference saw (null rates, value ranges, category sets), so a clean interval passes and a
broken one fails for a reason a user can read in the expectation id.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from monitoring_lib.errors import ConfigError

Severity = Literal["critical", "warning"]
LocalCheck = Literal["numeric_dtype", "boolean_dtype", "datetime_dtype"]

# Pandas dtype names accepted by the local type checks; listed in kwargs so a stored result says what
# was expected. Checked with pandas, because GX's type-list expectation misreports pandas 3 `str` columns
# and cannot accept an object column holding only booleans (what Arrow gives for a nullable boolean).
NUMERIC_TYPES = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float32", "Float64",
)  # fmt: skip
BOOLEAN_TYPES = ("bool", "boolean", "integer or float holding only 0/1", "object holding only booleans")
DATETIME_TYPES = ("datetime64[ns|us|ms|s]", "datetime64[ns|us|ms|s, tz]")

# "Finite" for a float: anything beyond the largest double is +/-inf (NaN is caught as null).
FLOAT_MAX = sys.float_info.max


@dataclass(frozen=True)
class ExpectationSpec:
    """One check: a stable id for storage and dashboards, the GX class that evaluates it, and its kwargs.

    `local_check` marks the few checks computed with pandas instead of GX (column dtypes); they are
    reported in the same shape as GX results.
    """

    id: str
    expectation_type: str
    kwargs: dict[str, Any]
    column: str | None
    severity: Severity
    local_check: LocalCheck | None = None

    @property
    def row_level(self) -> bool:
        """Whether failures point at individual rows (map expectations), used to count failed rows."""
        return self.local_check is None and self.expectation_type.startswith("ExpectColumnValues")


def _aware(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC: the source stores timestamptz and windows are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def not_null_mostly(reference_null_rate: float) -> float:
    """Tolerate up to three times the reference null rate, and at least one point more than it."""
    allowed = max(reference_null_rate * 3.0, reference_null_rate + 0.01)
    return max(0.0, min(1.0, 1.0 - allowed))


def widened_range(profile: NumericProfile, tolerance: float) -> tuple[float, float] | None:
    """The reference [min, max] widened by tolerance * (max - min); None when the reference had no values."""
    lo, hi = float(profile.min), float(profile.max)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    width = hi - lo
    if width == 0:  # a constant in the reference: widen relative to its magnitude instead
        width = abs(hi) or 1.0
    return lo - tolerance * width, hi + tolerance * width


def _with_mostly(kwargs: dict[str, Any], mostly: float) -> dict[str, Any]:
    return {**kwargs, "mostly": round(mostly, 6)} if mostly < 1.0 else kwargs


def _expectation_classes() -> dict[str, type]:
    import great_expectations as gx  # 5 s to import: only for configs that name extra GX expectations

    return {
        name.lower(): getattr(gx.expectations, name)
        for name in dir(gx.expectations)
        if name.startswith("Expect") and isinstance(getattr(gx.expectations, name), type)
    }


def resolve_expectation_type(name: str) -> type | None:
    """The GX expectation class for `expect_column_values_to_be_between` or `ExpectColumnValuesToBeBetween`."""
    return _expectation_classes().get(name.replace("_", "").lower())


def _extra_expectations(cfg: EndpointConfig) -> list[ExpectationSpec]:
    """Config-supplied expectations; each is instantiated once here so bad kwargs fail before any work."""
    if not cfg.quality.extra_expectations:
        return []
    classes = _expectation_classes()
    where = cfg.source_file or cfg.endpoint_id
    problems: list[str] = []
    specs: list[ExpectationSpec] = []
    for i, extra in enumerate(cfg.quality.extra_expectations):
        field_name = f"quality.extra_expectations[{i}]"
        cls = classes.get(extra.type.replace("_", "").lower())
        if cls is None:
            problems.append(f"{where}: {field_name}.type: unknown Great Expectations expectation '{extra.type}'")
            continue
        try:
            cls(**extra.kwargs)
        except Exception as exc:  # GX validates kwargs with pydantic; any failure is a config problem
            reason = " ".join(str(exc).split())
            problems.append(f"{where}: {field_name}.kwargs: invalid for {cls.__name__}: {reason}")
            continue
        column = extra.kwargs.get("column")
        snake = getattr(cls, "expectation_type", None) or extra.type
        specs.append(
            ExpectationSpec(
                id=f"extra[{i}]:{snake}" + (f":{column}" if column else ""),
                expectation_type=cls.__name__,
                kwargs=dict(extra.kwargs),
                column=column,
                severity=extra.severity,
            )
        )
    if problems:
        raise ConfigError(problems)
    return specs


def build_expectations(
    cfg: EndpointConfig,
    profile: ReferenceProfile | None,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
) -> list[ExpectationSpec]:
    """Every check for one interval of one endpoint, in a stable order with unique ids.

    Without a profile the reference-derived checks (ranges, category sets) are left out and null
    tolerances fall back to a reference null rate of zero.
    """
    src, q = cfg.source, cfg.quality
    window_start, window_end, now = _aware(window_start), _aware(window_end), _aware(now)
    null_rates = profile.null_rates if profile is not None else {}
    pred_profile = profile.prediction if profile is not None else None
    pred_numeric = not isinstance(pred_profile, CategoricalProfile) and (
        cfg.model.task == "regression" or isinstance(pred_profile, NumericProfile)
    )
    ts, rid, pred = src.timestamp_column, src.request_id_column, src.prediction_column
    specs: list[ExpectationSpec] = []

    def add(id_: str, etype: str, kwargs: dict[str, Any], column: str | None, severity: Severity,
            local_check: LocalCheck | None = None) -> None:
        specs.append(ExpectationSpec(id_, etype, kwargs, column, severity, local_check))

    add("columns_exist", "ExpectTableColumnsToMatchSet",
        {"column_set": src.columns(), "exact_match": False}, None, "critical")
    add("row_count", "ExpectTableRowCountToBeBetween",
        {"min_value": q.row_count.min, "max_value": q.row_count.max}, None, "critical")

    # Column types.
    type_list = "ExpectColumnValuesToBeInTypeList"
    add(f"type:{ts}", type_list, {"column": ts, "type_list": list(DATETIME_TYPES)}, ts, "critical",
        "datetime_dtype")
    numeric_columns = [*src.numeric_features, *([pred] if pred_numeric else []),
                       *([src.latency_column] if src.latency_column else [])]
    for col in dict.fromkeys(numeric_columns):
        add(f"type:{col}", type_list, {"column": col, "type_list": list(NUMERIC_TYPES)}, col, "critical",
            "numeric_dtype")
    if src.error_column:
        add(f"type:{src.error_column}", type_list,
            {"column": src.error_column, "type_list": list(BOOLEAN_TYPES)}, src.error_column, "critical",
            "boolean_dtype")

    # Identity and time: any problem here makes every downstream number wrong, so all are critical.
    add(f"not_null:{rid}", "ExpectColumnValuesToNotBeNull", {"column": rid}, rid, "critical")
    add(f"unique:{rid}", "ExpectColumnValuesToBeUnique", {"column": rid}, rid, "critical")
    add(f"not_null:{ts}", "ExpectColumnValuesToNotBeNull", {"column": ts}, ts, "critical")
    add(f"in_window:{ts}", "ExpectColumnValuesToBeBetween",
        {"column": ts, "min_value": window_start, "max_value": window_end, "strict_max": True}, ts, "critical")
    # Bounded by the window end for past windows, so re-running a window yields the same expectation.
    add(f"not_future:{ts}", "ExpectColumnValuesToBeBetween",
        {"column": ts, "max_value": min(now, window_end) + q.future_tolerance}, ts, "critical")

    # Features: nulls and values compared with what the reference saw; drift, not outages, so warnings.
    for col in src.features:
        add(f"not_null:{col}", "ExpectColumnValuesToNotBeNull",
            _with_mostly({"column": col}, not_null_mostly(null_rates.get(col, 0.0))), col, "warning")
    ref_columns: list[tuple[str, Any]] = []
    if profile is not None:
        ref_columns = [(c, profile.features.get(c)) for c in src.features]
        if pred_profile is not None:
            ref_columns.append((pred, pred_profile))
    seen_share = 1.0 - q.max_unseen_share
    for col, col_profile in ref_columns:
        if isinstance(col_profile, NumericProfile) and col in numeric_columns:
            bounds = widened_range(col_profile, q.range_tolerance)
            if bounds is not None:
                add(f"range:{col}", "ExpectColumnValuesToBeBetween",
                    _with_mostly({"column": col, "min_value": bounds[0], "max_value": bounds[1]}, seen_share),
                    col, "warning")
        elif isinstance(col_profile, CategoricalProfile):
            add(f"in_set:{col}", "ExpectColumnValuesToBeInSet",
                _with_mostly({"column": col, "value_set": list(col_profile.categories)}, seen_share),
                col, "warning")

    # Predictions: a row flagged as an error legitimately has none; every other row must have one.
    # ±Infinity and NaN are missing numbers (as for features), so this check also fails for them.
    pred_kwargs: dict[str, Any] = {"column": pred}
    if src.error_column:
        pred_kwargs |= {"row_condition": f"`{src.error_column}` != True", "condition_parser": "pandas"}
    add(f"not_null:{pred}", "ExpectColumnValuesToNotBeNull", pred_kwargs, pred, "critical")

    if src.latency_column:
        lat = src.latency_column
        add(f"non_negative:{lat}", "ExpectColumnValuesToBeBetween", {"column": lat, "min_value": 0}, lat, "warning")

    specs += _extra_expectations(cfg)
    duplicates = {s.id for s in specs if sum(o.id == s.id for o in specs) > 1}
    if duplicates:  # a column used twice in the config (e.g. latency also a feature) must not collide
        raise ConfigError([f"{cfg.source_file or cfg.endpoint_id}: source: columns produce duplicate "
                           f"quality checks {sorted(duplicates)}"])
    return specs


# kwargs naming the columns an expectation reads (GX's single-, pair- and multi-column expectations)
_COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
_NAME = re.compile(r"`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*)\b")


def columns_read(spec: ExpectationSpec, names: set[str]) -> list[str]:
    """The source columns a check reads: its column kwargs and the names in its row condition."""
    found: list[str] = []
    for key in _COLUMN_KWARGS:
        value = spec.kwargs.get(key)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, str) and v in names:
                found.append(v)
    condition = spec.kwargs.get("row_condition")
    if isinstance(condition, str):
        found += [a or b for a, b in _NAME.findall(condition) if (a or b) in names]
    return list(dict.fromkeys(found))
