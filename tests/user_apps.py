"""Monitoring applications used by the tests, as a user would write them (named in config as module:function)."""

import pandas as pd


def share_of_large_claims(df: pd.DataFrame, profile, threshold: float = 10_000.0) -> list[dict]:  # noqa: ANN001
    share = float((df["claimed_amount"] > threshold).mean())
    return [{"name": "large_claim_share", "kind": "custom", "status": "ok" if share < 0.5 else "alert",
             "value": share, "extra": {"threshold": threshold}}]


def broken(df: pd.DataFrame, profile) -> list[dict]:  # noqa: ANN001
    raise RuntimeError("this application has a bug")
