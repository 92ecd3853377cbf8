"""Reference profiles: the learned state drift and quality compare every interval against.

Fitted once per model version (scikit-learn's fit/transform split), stored as JSON in
`monitoring.reference_profiles`, and never re-read from the training data per interval.
Numeric counts have len(edges)+1 slots: [below edges[0], bin 1 .. bin n, above edges[-1]];
bins are closed on the left, the last inner bin also holds edges[-1] exactly.
Categorical counts have len(categories)+1 slots, the last one being the unseen bucket.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from monitoring_lib.estimation.estimator import PerformanceEstimator

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class NumericProfile:
    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    null_count: int
    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[str, float]
    kind: Literal["numeric"] = "numeric"

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(f"{self.name}: counts need len(edges)+1 slots (outer bins included)")

    @property
    def probabilities(self) -> np.ndarray:
        counts = np.asarray(self.counts, dtype=float)
        total = counts.sum()
        return counts / total if total else counts


@dataclass(frozen=True)
class CategoricalProfile:
    name: str
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    count: int
    null_count: int
    kind: Literal["categorical"] = "categorical"

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.categories) + 1:
            raise ValueError(f"{self.name}: counts need len(categories)+1 slots (unseen bucket last)")

    @property
    def probabilities(self) -> np.ndarray:
        counts = np.asarray(self.counts, dtype=float)
        total = counts.sum()
        return counts / total if total else counts


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class MultivariateProfile:
    """The fitted standardisation, principal components and chunk errors (stored in the reference profile)."""

    features: tuple[str, ...]
    centre: tuple[float, ...]  # per feature: the median z is taken from; `scale` the IQR in std units
    scale: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]  # the k kept eigenvectors (each of len(features)), orthonormal
    residual: tuple[tuple[float, ...], ...]  # the p - k eigenvectors left out
    explained_share: float
    chunk_errors: tuple[float, ...]
    chunk_rows: int

    @property
    def error_mean(self) -> float:
        return float(np.mean(self.chunk_errors))

    @property
    def error_std(self) -> float:
        return float(np.std(self.chunk_errors, ddof=1)) if len(self.chunk_errors) > 1 else 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultivariateProfile:
        return cls(
            features=tuple(d["features"]), centre=tuple(map(float, d["centre"])), scale=tuple(map(float, d["scale"])),
            components=tuple(tuple(map(float, c)) for c in d["components"]),
            residual=tuple(tuple(map(float, c)) for c in d["residual"]),
            explained_share=float(d["explained_share"]), chunk_errors=tuple(map(float, d["chunk_errors"])),
            chunk_rows=int(d["chunk_rows"]),
        )


OTHER_SEGMENT = "other"


@dataclass(frozen=True)
class SegmentProfile:
    """One segment column's values in the reference (`segments`): the named values then `other` (every value
    not named, and nulls), the rows of each, and per feature each value's own fitted column (its own bins
    for a numeric feature, the profile's categories for a categorical one); None where the value had no
    usable rows in the reference."""

    column: str
    values: tuple[str, ...]  # the named values, OTHER_SEGMENT last
    rows: tuple[int, ...]
    features: dict[str, tuple[ColumnProfile | None, ...]]  # feature -> per value, its fitted column

    def index(self, value: str) -> int:
        return self.values.index(value) if value in self.values[:-1] else len(self.values) - 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentProfile:
        return cls(column=d["column"], values=tuple(d["values"]), rows=tuple(map(int, d["rows"])),
                   features={f: tuple(column_from_dict(c) for c in per) for f, per in d["features"].items()})


def column_from_dict(d: dict[str, Any] | None) -> ColumnProfile | None:
    if d is None:
        return None
    if d["kind"] == "numeric":
        # jsonb prints a whole number without an exponent (1e300 as 1 and 300 zeros), which reads
        # back as a Python int: every statistic is read back as the float it was
        return NumericProfile(**{
            **d, "edges": tuple(map(float, d["edges"])), "counts": tuple(d["counts"]),
            **{k: float(d[k]) for k in ("mean", "std", "min", "max")},
            "quantiles": {k: float(v) for k, v in d["quantiles"].items()},
        })
    return CategoricalProfile(**{**d, "categories": tuple(d["categories"]), "counts": tuple(d["counts"])})


@dataclass(frozen=True)
class ReferenceProfile:
    endpoint_id: str
    model_version: str
    features: dict[str, ColumnProfile]
    prediction: ColumnProfile | None
    label: ColumnProfile | None
    row_count: int
    version: int = 0
    source: str = ""
    # calibration[feature][metric] = {"mean": m, "std": s, "chunks": n}: the metric's spread across
    # interval-sized chunks of the reference itself, for calibrated thresholds.
    calibration: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # name -> fraction of nulls in the reference, used by quality's `mostly`
    null_rates: dict[str, float] = field(default_factory=dict)
    # PCA of the standardised numeric features, when `drift.multivariate` was enabled at fit time
    multivariate: MultivariateProfile | None = None
    # a bounded sample of the reference's feature columns, when `drift.domain_classifier` was enabled
    reference_sample: dict[str, list[Any]] | None = None
    # CBPE's calibration or DLE's loss models, when `performance.estimation` was enabled and the data had labels
    estimator: PerformanceEstimator | None = None
    # per segment column (`segments.columns`), its values' own histograms
    segments: tuple[SegmentProfile, ...] = ()

    def column(self, name: str) -> ColumnProfile:
        if name in self.features:
            return self.features[name]
        if self.prediction is not None and self.prediction.name == name:
            return self.prediction
        raise KeyError(f"column '{name}' is not in the reference profile")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        col = column_from_dict
        return cls(
            endpoint_id=data["endpoint_id"],
            model_version=str(data["model_version"]),
            features={k: col(v) for k, v in data["features"].items()},  # type: ignore[misc]
            prediction=col(data.get("prediction")),
            label=col(data.get("label")),
            row_count=int(data["row_count"]),
            version=int(data.get("version", 0)),
            source=data.get("source", ""),
            calibration=data.get("calibration", {}),
            null_rates=data.get("null_rates", {}),
            multivariate=(MultivariateProfile.from_dict(data["multivariate"]) if data.get("multivariate")
                          else None),
            reference_sample=data.get("reference_sample"),
            estimator=PerformanceEstimator.from_dict(data["estimator"]) if data.get("estimator") else None,
            segments=tuple(SegmentProfile.from_dict(d) for d in data.get("segments") or ()),
        )
