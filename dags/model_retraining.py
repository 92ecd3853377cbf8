"""Retraining DAG: triggered by a monitoring DAG when drift is confirmed, never on a schedule."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

DOC = """### Model retraining
Triggered by `monitor__<endpoint>` with conf `endpoint_id`, `window_start`, `window_end`, `reasons`,
`drifted_features` (run id `retrain__<endpoint>__<window end>`, so one drifted window retrains once).

**retrain** loads the endpoint's recent labelled predictions, trains a challenger with the config's
`retraining.training_callable`, compares it with the served model on a time-ordered holdout, and promotes
it only when better: new version in `monitoring.model_endpoints`, artifact under `$MLMON_MODEL_DIR`, a new
reference profile. The outcome (promoted or rejected, with both models' metrics) is in
`monitoring.retraining_events` (event_type `training`). Re-running the task returns the recorded outcome.

Triage: "not registered" = the monitoring DAG never ran; "training_callable is not set" = config.
"""


@dag(dag_id="model_retraining", schedule=None, catchup=False, max_active_runs=1, doc_md=DOC,
     tags=["model-monitoring", "retraining"], render_template_as_native_obj=True,
     default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
     params={"endpoint_id": Param("", type="string", description="endpoint to retrain"),
             "window_start": Param("", type="string", description="ISO start of the triggering window"),
             "window_end": Param("", type="string", description="ISO end of the triggering window"),
             "reasons": Param([], type="array"), "drifted_features": Param([], type="array"),
             "run_id": Param(None, type=["null", "string"])})
def model_retraining():
    @task
    def retrain(params=None) -> dict:
        from mlmon_airflow import database_url, task_errors
        from monitoring_lib.config import get_endpoint
        from monitoring_lib.tasks import retrain as run_retraining

        with task_errors():
            return run_retraining(database_url(), get_endpoint(params["endpoint_id"]), dict(params))

    retrain()


model_retraining()
