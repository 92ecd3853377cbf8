"""Runs DAGs with `dag.test()` in a fresh process, so tests see a clean Airflow import and config.

Usage: python tests/dag_runner.py '[{"dag_id": ..., "logical_date": ISO, "conf": {...}}, ...]'
Prints, as its last line, a JSON object with each run's state, task states, return values, note and
asset events' extras, and
every DagRun in the metadata database (to count triggered runs).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime


def main() -> None:
    specs = json.loads(sys.argv[1])
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    # after Airflow configured its logging: a handler at INFO, as a task's log file has under Airflow's
    # default `logging_level` (dag.test() prints warnings only), so the output holds what a task log would
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    results = []
    for spec in specs:
        dag = bag.get_dag(spec["dag_id"])
        logical = datetime.fromisoformat(spec["logical_date"]) if spec.get("logical_date") else None
        run = dag.test(logical_date=logical, run_conf=spec.get("conf"))
        with create_session() as session:
            tis = run.get_task_instances(session=session)
            stored = session.query(DagRun).filter_by(dag_id=run.dag_id, run_id=run.run_id).one()
            events = session.query(AssetEvent).filter_by(source_dag_id=run.dag_id, source_run_id=run.run_id)
            results.append({
                "run_id": run.run_id,
                "note": stored.note,
                "asset_events": {e.asset.name: e.extra for e in events},
                "dag_id": spec["dag_id"],
                "state": str(run.state),
                "tasks": {ti.task_id: str(ti.state) for ti in tis},
                "tries": {ti.task_id: ti.try_number for ti in tis if ti.map_index < 0},
                "mapped": {t: sorted(str(ti.state) for ti in tis if ti.task_id == t and ti.map_index >= 0)
                           for t in {ti.task_id for ti in tis if ti.map_index >= 0}},
                "xcom": {ti.task_id: ti.xcom_pull(task_ids=ti.task_id, session=session)
                         for ti in tis if str(ti.state) == "success" and ti.map_index < 0},
            })
    with create_session() as session:
        runs = [{"dag_id": r.dag_id, "run_id": r.run_id, "state": str(r.state), "conf": r.conf}
                for r in session.query(DagRun).order_by(DagRun.id)]
    print(json.dumps({"results": results, "runs": runs}, default=str))


if __name__ == "__main__":
    main()
