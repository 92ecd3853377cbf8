"""Runs monitoring windows through the real DAGs with `dag.test()`, then any retraining they triggered.

Launched by `mlmon demo` in its own process (the library itself never imports Airflow). Prints one
JSON line per DAG run so the caller can show progress and build its report.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime


def _emit(**fields: object) -> None:
    print("MLMON " + json.dumps(fields, default=str), flush=True)


def _states(run) -> dict[str, str]:  # noqa: ANN001 - a DagRun
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def main() -> int:
    windows = json.loads(sys.argv[2])
    endpoint_id = sys.argv[1]
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        _emit(kind="error", detail=bag.import_errors)
        return 2
    monitor = bag.get_dag(f"monitor__{endpoint_id}")
    for start, end in windows:
        run = monitor.test(logical_date=datetime.fromisoformat(end),
                           run_conf={"window_start": start, "window_end": end, "force_recompute": True})
        _emit(kind="monitor", window_start=start, window_end=end, state=str(run.state), tasks=_states(run))
    with create_session() as session:
        triggered = [(r.dag_id, r.run_id, r.conf) for r in session.query(DagRun).filter(
            DagRun.run_id.like(f"retrain__{endpoint_id}__%")).order_by(DagRun.run_id)]
    for dag_id, run_id, conf in triggered:
        run = bag.get_dag(dag_id).test(run_conf={**conf, "run_id": run_id})
        _emit(kind="retraining", run_id=run_id, state=str(run.state), tasks=_states(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
