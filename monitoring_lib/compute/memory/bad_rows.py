"""Bad-row accounting: every defect in an interval is counted and reported, none of them crashes a run."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import CategoricalProfile, ReferenceProfile


@dataclass(frozen=True)
class BadRowReport:
    rows: int
    # distinct rows with at least one defect; of a repeated request id's rows, all but one clean row
    bad_rows: int
    by_reason: dict[str, int] = field(default_factory=dict)
    # rows whose request id another row shares (nulls excluded): the uniqueness check's answer, found
    # by the same hashing of the ids as the duplicate count
    repeated_ids: np.ndarray | None = field(default=None, compare=False, repr=False)


def _as_float(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Coerce to float64; returns values and a mask of entries that were present but not numbers."""
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("float64")
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype="float64", na_value=np.nan), np.zeros(len(series), dtype=bool)
    coerced = pd.to_numeric(series, errors="coerce")
    wrong = coerced.isna().to_numpy() & series.notna().to_numpy()
    return coerced.to_numpy(dtype="float64", na_value=np.nan), wrong


def _as_bool(series: pd.Series) -> np.ndarray:
    """The error flag: true for true, 't', 'yes', 'y', '1' and any number but 0; a missing value is false."""
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=bool, na_value=False)
    text = series.astype("string").str.strip().str.lower()
    truthy = text.isin(["true", "t", "1", "yes", "y"]).to_numpy(dtype=bool)
    numeric = pd.to_numeric(series, errors="coerce").fillna(0).to_numpy() != 0
    return truthy | numeric


def category_text(series: pd.Series) -> pd.Series:
    """Categories as the text profiles store (`category_counts`): a code column that gained a null (and
    became float) still reads '3', not '3.0', so it matches the categories fitted from clean data.

    Floats are read as float64, as `category_counts` sees them: whole values as their exact integer
    digits (beyond int64 too), others as Python prints the float64.
    """
    if not pd.api.types.is_float_dtype(series):
        return series.astype("string")
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    text = pd.Series(values, index=series.index).astype("string").to_numpy(dtype=object)
    whole = np.isfinite(values) & (values == np.floor(values))
    small = whole & (np.abs(values) < 2.0 ** 63)
    text = np.where(small, np.where(small, values, 0).astype(np.int64).astype(str), text)
    for i in np.flatnonzero(whole & ~small):
        text[i] = str(int(values[i]))
    return pd.Series(text, index=series.index, dtype="string")


@dataclass(frozen=True)
class _Ids:
    """One hashing of the request ids: what the bad-row count and the uniqueness check need from it."""

    codes: np.ndarray  # per row, the id's position among the distinct ids; -1 for a null id
    distinct: int
    first_seen: np.ndarray  # the id was seen on an earlier row
    repeated: np.ndarray  # the id is shared with any other row

    def good_rows(self, defective: np.ndarray) -> int:
        """Rows that are not bad: per id, one of its rows without another defect, if it has one.

        Every row of a repeated id but one is a duplicate; the one kept is a clean row when there
        is one. Taking the first in read order would make the count depend on an order SQL does not
        have, and the database mode counts the same way.
        """
        clean = self.codes[(self.codes >= 0) & ~defective]
        return int(np.count_nonzero(np.bincount(clean, minlength=self.distinct)))


def _id_duplicates(ids: pd.Series) -> _Ids:
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    present = codes >= 0
    series = pd.Series(codes)
    return _Ids(codes, len(uniques), series.duplicated(keep="first").to_numpy() & present,
                series.duplicated(keep=False).to_numpy() & present)


def categorical_prediction(profile: ReferenceProfile | None) -> bool:
    """A classifier's predictions fitted as classes (booleans, class names): they stay categories."""
    return profile is not None and isinstance(profile.prediction, CategoricalProfile)


def normalise_frame(
    df: pd.DataFrame, cfg: EndpointConfig, *, categorical_prediction: bool = False
) -> tuple[pd.DataFrame, BadRowReport]:
    """Give numeric columns float64 and the error flag bool, counting what had to be treated as missing.

    Rows are never dropped: drift and quality see nulls as nulls, and the counts say how many there were.
    With `categorical_prediction` the prediction is read as category text, as its profile was fitted:
    as a number a class name would be a wrong type and a boolean 1.0, matching no fitted class.
    """
    src = cfg.source
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlmon-ids") as pool:
        # hashing the request ids releases the GIL: it runs beside the column conversions
        ids = pool.submit(_id_duplicates, df[src.request_id_column]) if src.request_id_column in df else None
        return _normalise_columns(df, cfg, ids, categorical_prediction)


def _normalise_columns(
    df: pd.DataFrame, cfg: EndpointConfig, ids: Future[_Ids] | None, categorical_prediction: bool
) -> tuple[pd.DataFrame, BadRowReport]:
    src = cfg.source
    out = df.copy(deep=False)
    bad = np.zeros(len(df), dtype=bool)
    reasons: dict[str, int] = {}

    def note(reason: str, mask: np.ndarray) -> None:
        nonlocal bad
        count = int(mask.sum())
        if count:
            reasons[reason] = reasons.get(reason, 0) + count
            bad |= mask

    errored = np.zeros(len(df), dtype=bool)
    if src.error_column and src.error_column in out:
        out[src.error_column] = _as_bool(out[src.error_column])
        errored = out[src.error_column].to_numpy(dtype=bool)

    numeric_cols = [*src.numeric_features, *([] if categorical_prediction else [src.prediction_column])]
    if src.latency_column:
        numeric_cols.append(src.latency_column)
    for col in dict.fromkeys(numeric_cols):
        if col not in out:
            continue
        values, wrong = _as_float(out[col])
        note(f"wrong_type:{col}", wrong)
        note(f"non_finite:{col}", np.isinf(values))
        missing = np.isnan(values) & ~wrong
        if col == src.prediction_column:
            missing &= ~errored  # a failed request has no prediction by design; it is counted as an error
        note(f"null:{col}", missing)
        values = np.where(np.isinf(values), np.nan, values)
        out[col] = values
    for col in src.categorical_features:
        if col in out:
            note(f"null:{col}", out[col].isna().to_numpy())
            out[col] = category_text(out[col])
    pred = src.prediction_column
    if categorical_prediction and pred in out and pred not in src.categorical_features:
        note(f"null:{pred}", out[pred].isna().to_numpy() & ~errored)
        out[pred] = category_text(out[pred])
    ts = out[src.timestamp_column] if src.timestamp_column in out else None
    if ts is not None:
        out[src.timestamp_column] = pd.to_datetime(ts, utc=True, errors="coerce")
        note("invalid_timestamp", out[src.timestamp_column].isna().to_numpy())
    if ids is None:
        return out, BadRowReport(rows=len(df), bad_rows=int(bad.sum()), by_reason=reasons)
    hashed = ids.result()
    note("null_request_id", hashed.codes < 0)
    good = hashed.good_rows(bad)
    note("duplicate_request_id", hashed.first_seen)
    return out, BadRowReport(rows=len(df), bad_rows=len(df) - good, by_reason=reasons, repeated_ids=hashed.repeated)
