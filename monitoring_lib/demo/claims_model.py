"""The demo model: predicts the approved amount of a motor insurance claim.

The feature generator and the settlement rule live here too, so training data, live traffic and
late labels all come from one definition of "how claims behave" and the model has something real
to learn (caps by market value and repair estimate, deductibles, claim history, regional practice).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

NUMERIC_FEATURES: tuple[str, ...] = (
    "claimed_amount",
    "market_value",
    "vehicle_age",
    "policy_tenure",
    "previous_claims",
    "repair_estimate",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("region", "claim_type")
LABEL_COLUMN = "settled_amount"

REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
REGION_WEIGHTS = np.array([0.22, 0.20, 0.20, 0.18, 0.20])
CLAIM_TYPES: tuple[str, ...] = ("collision", "theft", "glass", "weather", "liability")
CLAIM_TYPE_WEIGHTS = np.array([0.45, 0.10, 0.15, 0.15, 0.15])

# Median repair cost and spread (log-normal sigma) per claim type; theft is priced off market value.
_REPAIR_MEDIAN = {"collision": 4_000.0, "glass": 600.0, "weather": 3_000.0, "liability": 5_000.0}
_REPAIR_SIGMA = {"collision": 0.7, "glass": 0.4, "weather": 0.8, "liability": 0.9}
_DEDUCTIBLE = {"collision": 500.0, "theft": 500.0, "glass": 100.0, "weather": 300.0, "liability": 0.0}
_REGION_PRACTICE = {"north": 1.00, "south": 0.97, "east": 1.02, "west": 0.95, "central": 1.00}

# One OpenMP thread: the model is small, and on a worker whose cores are shared with other tasks
# scikit-learn's spinning threads made a 20,000-row fit 1-10x slower than a single thread (0.6 s).
OPENMP_THREADS = 1

DEFAULT_PARAMS: dict[str, Any] = {
    "max_iter": 250,
    "learning_rate": 0.08,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    "early_stopping": False,
}


def sample_claims(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Draw `n` claims from the pre-drift population (features only, in column order)."""
    claim_type = rng.choice(np.array(CLAIM_TYPES), size=n, p=CLAIM_TYPE_WEIGHTS)
    region = rng.choice(np.array(REGIONS), size=n, p=REGION_WEIGHTS)
    vehicle_age = np.clip(rng.gamma(2.0, 3.0, n), 0.0, 30.0).round(1)
    market_value = (1_500.0 + 35_000.0 * np.exp(-0.12 * vehicle_age) * rng.lognormal(0.0, 0.3, n)).round(0)
    repair = np.empty(n)
    for kind, median in _REPAIR_MEDIAN.items():
        mask = claim_type == kind
        repair[mask] = rng.lognormal(np.log(median), _REPAIR_SIGMA[kind], int(mask.sum()))
    theft = claim_type == "theft"
    repair[theft] = market_value[theft] * rng.uniform(0.6, 1.0, int(theft.sum()))
    repair_estimate = np.minimum(repair, market_value * 1.1).round(0)
    claimed_amount = (repair_estimate * rng.lognormal(np.log(1.12), 0.15, n)).round(2)
    policy_tenure = np.clip(rng.exponential(5.0, n), 0.0, 40.0).round(1)
    previous_claims = rng.poisson(0.3 + 0.04 * policy_tenure).astype(float)
    return pd.DataFrame(
        {
            "claimed_amount": claimed_amount,
            "market_value": market_value,
            "vehicle_age": vehicle_age,
            "policy_tenure": policy_tenure,
            "previous_claims": previous_claims,
            "repair_estimate": repair_estimate,
            "region": pd.array(region, dtype="str"),
            "claim_type": pd.array(claim_type, dtype="str"),
        }
    )


def settle(features: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """The settled amount an adjuster would pay: the ground truth the model tries to predict.

    Corrupted inputs (missing, infinite, out of range) are clipped or imputed first: the claim was
    still settled even when the request logged bad values.
    """
    def clean(column: str, low: float, high: float, fill: float) -> np.ndarray:
        values = pd.to_numeric(features[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        values = np.where(np.isfinite(values), values, fill)
        return np.clip(values, low, high)

    claimed = clean("claimed_amount", 0.0, 500_000.0, 3_000.0)
    market = clean("market_value", 500.0, 500_000.0, 15_000.0)
    repair = clean("repair_estimate", 0.0, 500_000.0, 3_000.0)
    tenure = clean("policy_tenure", 0.0, 40.0, 5.0)
    previous = clean("previous_claims", 0.0, 20.0, 0.0)
    kind = features["claim_type"].astype(object).to_numpy()
    region = features["region"].astype(object).to_numpy()

    covered = np.where(kind == "theft", 0.9 * market, np.minimum(repair * 1.05, market))
    deductible = pd.Series(kind).map(_DEDUCTIBLE).fillna(500.0).to_numpy(dtype=float)
    base = np.maximum(np.minimum(claimed, covered) - deductible, 0.0)
    history = 1.0 - 0.06 * np.minimum(previous, 5.0)
    loyalty = 1.0 + 0.01 * np.minimum(tenure, 10.0)
    practice = pd.Series(region).map(_REGION_PRACTICE).fillna(1.0).to_numpy(dtype=float)
    liability = np.where(kind == "liability", 0.85, 1.0)
    amount = base * history * loyalty * practice * liability
    n = len(features)
    # What the features cannot see: adjuster judgement, and the few claims disputed or partly refused.
    disputed = rng.random(n) < 0.05
    amount = np.where(disputed, amount * rng.uniform(0.0, 0.6, n), amount)
    amount = amount * rng.lognormal(0.0, 0.12, n) + rng.normal(0.0, 150.0, n)
    return np.clip(amount, 0.0, claimed).round(2)


# The model learns from its own draw of the population (seed + MODEL_DRAW); the training table the reference
# is fitted from is another draw, so the reference holds the errors the model makes on claims it never saw,
# as the performance estimator needs (on its own training rows a model errs less than in service).
MODEL_DRAW = 1_000


def make_training_data(n: int, seed: int) -> pd.DataFrame:
    """`n` labelled claims from the pre-drift population: the features plus `settled_amount`."""
    rng = np.random.default_rng(seed)
    df = sample_claims(n, rng)
    df[LABEL_COLUMN] = settle(df, rng)
    return df


@dataclass
class ClaimsModel:
    """A fitted estimator plus what it needs to read a DataFrame the way it was trained."""

    estimator: HistGradientBoostingRegressor
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    label_column: str
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    @property
    def model_class(self) -> str:
        cls = type(self.estimator)
        return f"{cls.__module__.split('._')[0]}.{cls.__name__}"

    def _matrix(self, df: pd.DataFrame) -> pd.DataFrame:
        """Serving semantics: infinities count as missing and unseen categories as missing."""
        numeric = df[list(self.numeric_features)].apply(pd.to_numeric, errors="coerce").astype(float)
        numeric = numeric.replace([np.inf, -np.inf], np.nan)
        frame = {c: numeric[c].to_numpy() for c in self.numeric_features}
        for column in self.categorical_features:
            values = df[column].astype(object).where(df[column].notna(), None)
            frame[column] = pd.Categorical(values, categories=list(self.categories[column]))
        return pd.DataFrame(frame, index=df.index)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Approved amounts, never negative."""
        if len(df) == 0:
            return np.empty(0)
        with threadpool_limits(limits=OPENMP_THREADS, user_api="openmp"):
            raw = self.estimator.predict(self._matrix(df))
        return np.clip(raw, 0.0, None)

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> ClaimsModel:
        """Load a stored artifact. Pickle runs code on load: only read artifacts this product wrote."""
        model = pickle.loads(data)
        if not isinstance(model, cls):
            raise TypeError(f"artifact holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def train(
    train_df: pd.DataFrame,
    *,
    numeric_features: list[str] | tuple[str, ...],
    categorical_features: list[str] | tuple[str, ...],
    label_column: str,
    params: dict[str, Any] | None = None,
) -> ClaimsModel:
    """Fit a gradient-boosted regressor with native categorical handling (the retraining callable)."""
    numeric = tuple(numeric_features)
    categorical = tuple(categorical_features)
    labelled = train_df[train_df[label_column].notna()]
    if labelled.empty:
        raise ValueError(f"no rows with a '{label_column}' label to train on")
    categories = {
        c: tuple(sorted(str(v) for v in labelled[c].dropna().unique())) for c in categorical
    }
    estimator = HistGradientBoostingRegressor(
        categorical_features="from_dtype", random_state=0, **{**DEFAULT_PARAMS, **(params or {})}
    )
    model = ClaimsModel(estimator, numeric, categorical, label_column, categories)
    target = pd.to_numeric(labelled[label_column]).to_numpy(dtype=float)
    with threadpool_limits(limits=OPENMP_THREADS, user_api="openmp"):
        estimator.fit(model._matrix(labelled), target)
    return model
