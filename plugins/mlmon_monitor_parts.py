"""The monitoring DAG's doc, trigger form and assets: what `dags/model_monitoring.py` declares but need not spell.

The window params are date-times in the Param schema, so the trigger form shows a picker and Airflow refuses
text such as "yesterday" before a run exists. The pattern does the refusing: the JSON-schema validator Airflow
uses ignores `format` without the optional date-time checker.
"""

from __future__ import annotations

from airflow.sdk import Asset, Param

from monitoring_lib.config import EndpointConfig, format_duration

ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$"
SUMMARY_TABLES = ("drift_summary", "feature_drift", "feature_stats", "data_quality_results", "operational_metrics",
                  "app_results")
SUMMARY_ASSETS = [Asset(name=f"monitoring.{t}", uri=f"mlmon://monitoring/{t}") for t in SUMMARY_TABLES]

DOC = """### Monitoring of `{e}` ({p}, model `{m}`)
Every {i}: wait for the window's late rows, then **compute_interval** (extract, GX quality, drift, summaries,
Dynatrace outbox, in one transaction; split models first map **summarise_group** over feature groups),
**quality_gate**, **model_performance** (late labels), **push_dynatrace**, **decide_retraining** →
**trigger_retraining** (`{t}`, deterministic run id: re-runs never retrain twice). `{t}` starts paused in a
default Airflow: unpause it once (`airflow dags unpause {t}`); until then trigger_retraining fails at once and the
decision is recorded as `trigger_failed` in `monitoring.retraining_events`, which starts no cooldown.

Each run's note gives the window, rows, bad rows, data quality with the failed checks, and drift with the
drifted features and reasons; the summary tables' asset events carry the same as `extra`.
**quality_gate** is *success* when no critical check failed, *skipped* when one did (`quality.on_failure`
`{q}`), *upstream_failed* under `fail_task`, where compute_interval fails instead: filter runs on it.

Triage: *wait_for_data* or *compute_interval* failed without retry = bad window params, critical data-quality
failure (under `fail_task`) or bad config (`mlmon validate-config`); retrying = database unreachable.
*push_dynatrace* failing never affects stored results; retries resend lines under an hour old.
"""


def monitor_doc(cfg: EndpointConfig) -> str:
    return DOC.format(e=cfg.endpoint_id, p=cfg.project, m=cfg.model.name, i=format_duration(cfg.schedule.interval),
                      t=cfg.retraining.target_dag, q=cfg.quality.on_failure)


def monitor_params(cfg: EndpointConfig) -> dict[str, Param]:
    """The trigger form: leave both window fields empty for the run's own window."""
    every = format_duration(cfg.schedule.interval)
    how = (f"Leave both empty: the run computes the last whole {every} window ending at or before its data"
           " interval's end (for a manual run: the trigger time). Set both to pick another window; a time"
           " without a zone is UTC. The logical date does not choose the window.")
    return {
        "window_start": Param(None, type=["null", "string"], format="date-time", pattern=ISO_DATETIME,
                              title="Window start", description=how),
        "window_end": Param(None, type=["null", "string"], format="date-time", pattern=ISO_DATETIME,
                            title="Window end", description="Exclusive end of the window; with window_start."),
        "force_recompute": Param(False, type="boolean", title="Force recompute",
                                 description="Recompute even if the stored window is up to date (after a config"
                                             " change)."),
    }
