"""The domain classifier's verdict for one window, the same in every compute mode (`drift.domain_classifier`).

Both modes classify the reference sample stored with the profile against the same bounded sample of
the window (`source.sample_window`), so they store the same AUC; the memory mode does not sample its
frame, which would pick other rows.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.domain import DomainResult, domain_auc, judge_domain
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.source import sample_window


def domain_wanted(profile: ReferenceProfile | None, cfg: EndpointConfig) -> bool:
    """Whether the profile holds a reference sample of exactly the configured features."""
    sample = profile.reference_sample if profile is not None else None
    return (cfg.drift.domain_classifier.enabled and sample is not None
            and set(sample) == set(cfg.source.features))


def window_domain(url: str, cfg: EndpointConfig, profile: ReferenceProfile, start: datetime,
                  end: datetime) -> DomainResult:
    dc, src = cfg.drift.domain_classifier, cfg.source
    numeric, categorical = list(src.numeric_features), list(src.categorical_features)
    window = sample_window(url, cfg, start, end, [*numeric, *categorical], dc.sample_rows)
    reference = pd.DataFrame(profile.reference_sample)
    if len(window) < dc.min_rows or len(reference) < dc.min_rows:
        return judge_domain(None, dc.possible, dc.detected, len(reference), len(window))
    auc = domain_auc(reference, window, numeric, categorical, dc.folds)
    return judge_domain(auc, dc.possible, dc.detected, len(reference), len(window))
