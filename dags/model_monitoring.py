"""One monitoring DAG per endpoint config in `configs/` (or `$MLMON_CONFIG_DIR`).

Per-endpoint DAGs rather than one mapped DAG: each endpoint keeps its own interval, start date, catchup
and `max_active_runs=1`, and operators pause, backfill or clear one model alone. Parsing reads YAML only.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DeltaDataIntervalTimetable, PokeReturnValue, dag, task

from mlmon_airflow import record_retraining_trigger, refuse_paused_target
from mlmon_alerting import alerting_args, alerting_doc, failure_callbacks, task_alerting
from mlmon_monitor_parts import SUMMARY_ASSETS, monitor_doc, monitor_params
from monitoring_lib.config import load_each


def build(cfg):  # noqa: ANN001, ANN201
    e = cfg.endpoint_id

    @dag(dag_id=f"monitor__{e}", schedule=DeltaDataIntervalTimetable(cfg.schedule.interval),
         start_date=cfg.schedule.start_date, catchup=cfg.schedule.catchup, max_active_runs=1,
         tags=["model-monitoring", cfg.project, e], render_template_as_native_obj=True,
         doc_md=monitor_doc(cfg) + alerting_doc(cfg), **alerting_args(cfg), params=monitor_params(cfg),
         default_args={**task_alerting(cfg), "retries": 3, "retry_delay": timedelta(seconds=30),
                       "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=15)})
    def monitor():
        @task.sensor(poke_interval=60, timeout=cfg.schedule.grace_period.total_seconds() + 3600, mode="reschedule")
        def wait_for_data(data_interval_start=None, data_interval_end=None, params=None) -> PokeReturnValue:
            from mlmon_airflow import task_errors
            from monitoring_lib.tasks import wait_for_window
            with task_errors():  # bad window params fail at once, naming the param
                done, window = wait_for_window(cfg, data_interval_start, data_interval_end, params)
            return PokeReturnValue(is_done=done, xcom_value=window)

        @task
        def summarise_group(window: dict, group: int, params=None) -> dict:
            from mlmon_airflow import database_url, task_errors
            from monitoring_lib.tasks import summarise_feature_group
            with task_errors():
                return summarise_feature_group(database_url(), cfg, window, group, force=params["force_recompute"])

        @task(outlets=SUMMARY_ASSETS)
        def compute_interval(window: dict, groups=None, params=None, **context) -> dict:  # noqa: ANN001, ANN003
            from mlmon_run_outcome import compute_task  # report for XCom; outcome to log, note and assets
            return compute_task(cfg, window, params["force_recompute"], None if groups is None else list(groups),
                                context, SUMMARY_ASSETS)

        @task  # a leaf: skipped when a critical check failed, for operators to filter runs on
        def quality_gate(**context) -> str:  # noqa: ANN003
            from mlmon_run_outcome import gate
            return gate(cfg, context)

        @task(retries=6, retry_delay=timedelta(minutes=1), trigger_rule="all_done")  # after model_performance
        def push_dynatrace() -> dict:
            from mlmon_airflow import database_url, dynatrace_client, task_errors
            from monitoring_lib.tasks import push_dynatrace as push
            with task_errors():
                return push(database_url(), dynatrace_client(), e)

        @task
        def model_performance(report: dict) -> dict:
            from mlmon_airflow import database_url, task_errors
            from monitoring_lib.tasks import model_performance as recompute
            with task_errors():
                return recompute(database_url(), cfg, report)

        @task(trigger_rule="one_failed")  # a leaf, so a failed model_performance fails the run
        def performance_failed(ti=None) -> None:  # noqa: ANN001
            from mlmon_airflow import fail_naming_failed_tasks
            fail_naming_failed_tasks(ti, ["wait_for_data", "summarise_group", "compute_interval", "model_performance"])

        @task.short_circuit
        def decide_retraining(report: dict):  # noqa: ANN202 - the trigger's conf, or False
            from mlmon_airflow import database_url, task_errors
            from monitoring_lib.tasks import decide_retraining as decide
            with task_errors():
                return decide(database_url(), cfg, report)

        trigger = TriggerDagRunOperator(  # records its outcome on the decision: a failed one starts no cooldown
            task_id="trigger_retraining", trigger_dag_id=cfg.retraining.target_dag,
            trigger_run_id="{{ ti.xcom_pull(task_ids='decide_retraining')['run_id'] }}",
            conf="{{ ti.xcom_pull(task_ids='decide_retraining') }}",
            skip_when_already_exists=True, fail_when_dag_is_paused=True, retries=2, pre_execute=refuse_paused_target,
            on_success_callback=record_retraining_trigger, on_skipped_callback=record_retraining_trigger,
            on_failure_callback=failure_callbacks(cfg, record_retraining_trigger))
        window, n = wait_for_data(), len(cfg.feature_groups())
        groups = summarise_group.partial(window=window).expand(group=list(range(n))) if n else None
        report = compute_interval(window, groups)
        report >> quality_gate()
        performance = model_performance(report)
        [report, performance] >> push_dynatrace()
        performance >> performance_failed()
        decide_retraining(report) >> trigger

    return monitor()


# files with problems (and endpoint ids defined twice) are left out and reported by dags/config_check.py,
# so one broken file never hides the other endpoints
for _cfg in load_each()[0].values():
    globals()[f"monitor__{_cfg.endpoint_id}"] = build(_cfg)
