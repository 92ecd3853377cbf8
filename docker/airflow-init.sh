#!/usr/bin/env bash
# One-shot init of the compose stack, run on every `docker compose up` (each step is idempotent):
# volume ownership, logins and grants, the Airflow metadata schema, the admin login, the monitoring schema,
# the demo endpoint's training data and reference profile, and unpausing the project's new DAGs.
# Run through docker/entrypoint.sh, which exports the database URLs built from the users and passwords.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${AIRFLOW_ADMIN_USER:?set AIRFLOW_ADMIN_USER in .env}"
: "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD in .env}"
: "${MLMON_ADMIN_DATABASE_URL:?set POSTGRES_USER and POSTGRES_PASSWORD in .env}"

# Started as root (as the official airflow-init is): hand the named volumes to AIRFLOW_UID, then go on as it.
if [[ "$(id -u)" == "0" ]]; then
    : "${AIRFLOW_UID:?set AIRFLOW_UID in .env (id -u on Linux)}"
    bash "$here/init-volumes.sh"
    if [[ "${AIRFLOW_UID}" != "0" ]]; then
        exec python "$here/as_user.py" "${AIRFLOW_UID}" /bin/bash "${BASH_SOURCE[0]}"
    fi
fi

python "$here/stack_db.py" roles
airflow db migrate

# Simple auth manager: the admin user and its password live in the shared passwords file.
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps({os.environ["AIRFLOW_ADMIN_USER"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}))
path.chmod(0o600)
print(f"admin user '{os.environ['AIRFLOW_ADMIN_USER']}' written to {path}")
PY

# The monitoring schema and the demo's first start belong to the superuser; the grants then hand the
# monitoring login its schema and read access to the source, and the demo service its tables.
MLMON_DATABASE_URL="$MLMON_ADMIN_DATABASE_URL" mlmon db upgrade
if [[ "${MLMON_DEMO:-true}" == "true" ]]; then
    MLMON_DATABASE_URL="$MLMON_ADMIN_DATABASE_URL" mlmon init-demo
fi
python "$here/stack_db.py" grants

# Unpause the project's DAGs the first time they appear, and only them: a DAG an operator paused stays paused.
known="$(python "$here/project_dags.py" list)"
airflow dags reserialize
new="$(python "$here/project_dags.py" new "$known")"
if [[ -n "$new" ]]; then
    airflow dags unpause --treat-dag-id-as-regex --yes "$new"
else
    echo "no new project DAG to unpause"
fi
