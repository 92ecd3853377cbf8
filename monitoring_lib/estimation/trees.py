"""A fitted gradient-boosted regressor as plain arrays, stored as JSON and evaluated with NumPy.

The reference profile is JSON in PostgreSQL; a pickled model there would let anyone who can write the
monitoring schema run code in every worker. scikit-learn's HistGradientBoostingRegressor keeps each
tree as a structured array of nodes: exported here (numeric splits only; categoricals arrive as codes)
and walked for all rows and all trees at once, one tree level per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TreeEnsemble:
    baseline: float
    feature: tuple[int, ...]  # per node, all trees' nodes end to end
    threshold: tuple[float, ...]
    missing_left: tuple[bool, ...]
    left: tuple[int, ...]  # global node indices
    right: tuple[int, ...]
    leaf: tuple[bool, ...]
    value: tuple[float, ...]
    roots: tuple[int, ...]
    depth: int

    @classmethod
    def from_model(cls, model: Any) -> TreeEnsemble:
        """From a fitted `HistGradientBoostingRegressor` without categorical features (identity link)."""
        feature, threshold, missing, left, right, leaf, value, roots = [], [], [], [], [], [], [], []
        depth = 0
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            if np.any(nodes["is_categorical"]):
                raise ValueError("categorical splits are not exported: pass categories as codes")
            offset = len(feature)
            roots.append(offset)
            feature += nodes["feature_idx"].astype(int).tolist()
            threshold += nodes["num_threshold"].astype(float).tolist()
            missing += nodes["missing_go_to_left"].astype(bool).tolist()
            left += (nodes["left"].astype(int) + offset).tolist()
            right += (nodes["right"].astype(int) + offset).tolist()
            leaf += nodes["is_leaf"].astype(bool).tolist()
            value += nodes["value"].astype(float).tolist()
            depth = max(depth, int(nodes["depth"].max()))
        return cls(float(np.ravel(model._baseline_prediction)[0]), tuple(feature), tuple(threshold), tuple(missing),
                   tuple(left), tuple(right), tuple(leaf), tuple(value), tuple(roots), depth)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Sum of the trees' leaves plus the baseline, row by row, as scikit-learn's `predict` gives it."""
        x = np.asarray(x, dtype=float)
        if not self.roots:
            return np.full(len(x), self.baseline)
        feature, threshold = np.asarray(self.feature), np.asarray(self.threshold)
        missing, leaf = np.asarray(self.missing_left), np.asarray(self.leaf)
        left, right = np.asarray(self.left), np.asarray(self.right)
        node = np.broadcast_to(np.asarray(self.roots), (len(x), len(self.roots))).copy()
        rows = np.arange(len(x))[:, None]
        for _ in range(self.depth):
            at_leaf = leaf[node]
            if at_leaf.all():
                break
            v = x[rows, feature[node]]
            go_left = np.where(np.isnan(v), missing[node], v <= threshold[node])
            node = np.where(at_leaf, node, np.where(go_left, left[node], right[node]))
        return self.baseline + np.asarray(self.value)[node].sum(axis=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TreeEnsemble:
        return cls(float(d["baseline"]), tuple(map(int, d["feature"])), tuple(map(float, d["threshold"])),
                   tuple(map(bool, d["missing_left"])), tuple(map(int, d["left"])), tuple(map(int, d["right"])),
                   tuple(map(bool, d["leaf"])), tuple(map(float, d["value"])), tuple(map(int, d["roots"])),
                   int(d["depth"]))
