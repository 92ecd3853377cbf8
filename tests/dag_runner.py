"""Runs one DAG with `dag.test()` in a fresh process, so each test sees a clean Airflow import.

Usage: python tests/dag_runner.py DAG_ID '{"logical_date": ISO, "conf": {...}}'
Prints, as its last line, a JSON object: the run's state, each task's state, and the run ids of
every DAG in the metadata database (to count triggered runs).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime


def main() -> None:
    dag_id, spec = sys.argv[1], json.loads(sys.argv[2])
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    logical = datetime.fromisoformat(spec["logical_date"]) if spec.get("logical_date") else None
    run = dag.test(logical_date=logical, run_conf=spec.get("conf"))
    with create_session() as session:
        tis = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        xcom = {}
        for ti in run.get_task_instances(session=session):
            value = ti.xcom_pull(task_ids=ti.task_id, session=session) if str(ti.state) == "success" else None
            xcom[ti.task_id] = value
        runs = [(r.dag_id, r.run_id, str(r.state)) for r in session.query(DagRun).all()]
    print(json.dumps({"state": str(run.state), "tasks": tis, "xcom": xcom, "runs": runs}, default=str))


if __name__ == "__main__":
    main()
