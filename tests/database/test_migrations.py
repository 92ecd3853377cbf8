import psycopg

from monitoring_lib import migrations

TABLES = {
    "model_endpoints", "reference_profiles", "interval_runs", "feature_drift", "drift_summary",
    "feature_stats", "data_quality_results", "operational_metrics", "model_performance",
    "app_results", "retraining_events", "dynatrace_outbox", "model_versions",
}


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'monitoring'"
    ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_twice_on_empty_database_leaves_the_monitoring_tables(empty_db_url):
    with psycopg.connect(empty_db_url) as conn:
        first = migrations.upgrade(conn)
        conn.commit()
        second = migrations.upgrade(conn)
        conn.commit()
        assert [m.version for m in first] == [m.version for m in migrations.available()]
        assert second == []
        assert TABLES <= _tables(conn)
        assert _tables(conn) - TABLES == {"schema_migrations"}
        versions = [r[0] for r in conn.execute("SELECT version FROM monitoring.schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in migrations.available()]


def test_readonly_role_can_select_but_not_write(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("SET ROLE mlmon_readonly")
        conn.execute("SELECT count(*) FROM monitoring.drift_summary").fetchone()
        try:
            conn.execute("DELETE FROM monitoring.drift_summary")
        except psycopg.errors.InsufficientPrivilege:
            pass
        else:
            raise AssertionError("read-only role was allowed to delete")


def test_decisions_keep_why_a_trigger_failed(db_url):
    with psycopg.connect(db_url) as conn:
        column = conn.execute(
            "SELECT data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'monitoring'"
            " AND table_name = 'retraining_events' AND column_name = 'trigger_error'").fetchone()
    assert column == ("text", "YES")
