"""The window's reconstruction error from the frame (`drift.multivariate`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring_lib.drift.multivariate import WindowError, standardise, window_error
from monitoring_lib.drift.profile import MultivariateProfile


def feature_matrix(df: pd.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    """(rows, features) as float, NaN where a value is missing or not a number."""
    return np.column_stack([pd.to_numeric(df[f], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                            for f in features]) if len(df) else np.empty((0, len(features)))


# rows per block: the z-scores of a block stay a few MB whatever the window's size
BLOCK_ROWS = 65_536


def frame_error(df: pd.DataFrame, model: MultivariateProfile) -> WindowError:
    """The window's error, block by block, so the work adds no copy of the frame to the worker's memory."""
    centre, scale = np.asarray(model.centre), np.asarray(model.scale)
    total = WindowError(rows=0, error_sum=0.0)
    for start in range(0, len(df), BLOCK_ROWS):
        block = window_error(standardise(feature_matrix(df.iloc[start:start + BLOCK_ROWS], model.features),
                                         centre, scale), model)
        total = WindowError(rows=total.rows + block.rows, error_sum=total.error_sum + block.error_sum)
    return total
