#!/usr/bin/env bash
# Runs once, when the PostgreSQL data volume is first created: the Airflow metadata database and the
# login Grafana uses. The login only gets membership in `mlmon_readonly` (SELECT on schema `monitoring`);
# the schema itself comes later from `mlmon db upgrade`.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v airflow_db="$AIRFLOW_DB_NAME" \
     -v grafana_user="$MLMON_GRAFANA_DB_USER" \
     -v grafana_password="$MLMON_GRAFANA_DB_PASSWORD" <<'SQL'
SELECT format('CREATE DATABASE %I', :'airflow_db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'airflow_db') \gexec

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mlmon_readonly') THEN
        CREATE ROLE mlmon_readonly NOLOGIN;
    END IF;
END
$$;

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE mlmon_readonly', :'grafana_user', :'grafana_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'grafana_user') \gexec
SQL
