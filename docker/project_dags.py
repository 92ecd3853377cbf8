"""The project's DAGs in the Airflow metadata database: list them, or name those not listed before.

The init lists them before `airflow dags reserialize` and unpauses only those that appeared since, so a
first start runs the monitoring and retraining DAGs at once (instead of `dags_are_paused_at_creation`
off for every DAG), while a DAG an operator paused stays paused across restarts.
"""

from __future__ import annotations

import re
import sys

PROJECT_DAGS = re.compile(r"^(monitor__.+|model_retraining)$")


def project_dag_ids() -> set[str]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {d for d in session.scalars(select(DagModel.dag_id)) if PROJECT_DAGS.match(d)}


def main(argv: list[str]) -> int:
    if argv[:1] == ["list"]:
        print(" ".join(sorted(project_dag_ids())))
        return 0
    if argv[:1] == ["new"] and len(argv) == 2:
        new = sorted(project_dag_ids() - set(argv[1].split()))
        # one anchored pattern of exactly these ids, for `airflow dags unpause --treat-dag-id-as-regex`
        print(f"^({'|'.join(re.escape(d) for d in new)})$" if new else "")
        return 0
    print("usage: project_dags.py list | new 'DAG_ID ...'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
