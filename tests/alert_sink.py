"""A real Airflow notifier for tests: appends what it was called for, as one JSON line, to a file.

Importable by Airflow's processes as `tests.alert_sink.FileNotifier` when the repository root is on PYTHONPATH.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier


class FileNotifier(BaseNotifier):
    template_fields = ("label",)

    def __init__(self, path: str, label: str = "{{ run_id }}"):
        super().__init__()
        self.path = path
        self.label = label

    def notify(self, context: dict[str, Any]) -> None:
        ti, dag_run = context.get("ti"), context.get("dag_run")
        run = dag_run if isinstance(dag_run, dict) else {"dag_id": getattr(dag_run, "dag_id", None),
                                                          "run_id": getattr(dag_run, "run_id", None)}
        # a deadline's context holds the run as the REST API shows it, where the run id is `dag_run_id`
        run_id = context.get("run_id") or run.get("run_id") or run.get("dag_run_id")
        line = {"dag_id": run.get("dag_id"), "run_id": run_id,
                "task_id": getattr(ti, "task_id", None), "exception": str(context.get("exception") or ""),
                "deadline": context.get("deadline"), "label": self.label}
        with open(self.path, "a") as sink:
            sink.write(json.dumps(line, default=str) + "\n")


class SyncOnlyNotifier(BaseNotifier):
    """Implements notify only: cannot run in the triggerer."""

    def notify(self, context: dict[str, Any]) -> None:
        raise AssertionError("not called in tests")


class NotANotifier:
    """Importable, but not a notifier."""
