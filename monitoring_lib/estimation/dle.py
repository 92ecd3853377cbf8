"""Direct loss estimation (DLE) for a regressor: a model of each row's error, fitted on the reference.

Two small gradient-boosted models learn, from the features and the prediction, the absolute and the
squared error the monitored model made on the labelled reference. Over a window, the mean predicted
absolute error estimates MAE and the root of the mean predicted squared error estimates RMSE. Like
CBPE it holds under covariate shift (the window's rows move to regions where the model errs more or
less) and cannot see a changed relation between features and target until labels land.
"""

from __future__ import annotations

import numpy as np

from monitoring_lib.estimation.trees import TreeEnsemble

REGRESSION_METRICS = ("mae", "rmse")
_PARAMS = {"max_iter": 60, "max_depth": 5, "learning_rate": 0.1, "min_samples_leaf": 50, "random_state": 0}


def fit_loss_models(x: np.ndarray, errors: np.ndarray) -> dict[str, TreeEnsemble]:
    """An ensemble per metric: `mae` predicts |error|, `rmse` predicts error squared."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # scikit-learn loads only where a reference is fitted

    models = {}
    for metric, target in (("mae", np.abs(errors)), ("rmse", errors**2)):
        model = HistGradientBoostingRegressor(**_PARAMS, early_stopping=False).fit(x, target)
        models[metric] = TreeEnsemble.from_model(model)
    return models

