"""Data-quality checks for each interval: expectations derived from the config and the reference profile,
and the outcome types both compute modes return. The checks run in `compute.memory.quality` (a frame: vectorised
pandas and Great Expectations) or `compute.database.quality` (SQL); `results.quality` stores them as
long/narrow rows in `monitoring.data_quality_results`.

Great Expectations is imported lazily inside the functions that need it (the import takes seconds), so
importing this package stays cheap for DAG parsing and for callers that only read results.

Its loggers are set to WARNING here, before it is first imported: at INFO, the import alone writes over 200
`_docs_decorators` lines into every task log, burying the interval's own summary. Its warnings and errors
still show.
"""

import logging

from monitoring_lib.quality.results import QualityOutcome, QualityResult
from monitoring_lib.quality.suite import ExpectationSpec, build_expectations, resolve_expectation_type

logging.getLogger("great_expectations").setLevel(logging.WARNING)  # GX itself is imported later, lazily

__all__ = [
    "ExpectationSpec",
    "QualityOutcome",
    "QualityResult",
    "build_expectations",
    "resolve_expectation_type",
]
