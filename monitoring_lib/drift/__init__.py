"""Drift against a stored reference: the profile fitted once, the metrics per feature, and the status rules.

`fit` builds a `profile` from training data; `summaries` holds the `ColumnSummary` both compute modes
produce; `engine` compares a window's summaries with the profile using the metrics `registry` names
(`metrics`, added through `registration`); `tiers` turns metric values into the stored status; `stable`
keeps moments finite near float max; `anomaly` judges summary numbers against their own history.
"""
