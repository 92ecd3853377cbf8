"""Performance estimated before labels land: CBPE for classifiers, direct loss estimation for regressors."""
