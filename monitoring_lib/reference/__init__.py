"""Reference profiles fitted from training data: `fit` computes one from a frame, `training` reads the
training data, fits it and stores the profile for a model version."""

from monitoring_lib.reference.fit import fit_reference
from monitoring_lib.reference.training import fit_and_store, fit_profile, read_training_data

__all__ = ["fit_and_store", "fit_profile", "fit_reference", "read_training_data"]
