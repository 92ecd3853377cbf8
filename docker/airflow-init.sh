#!/usr/bin/env bash
# One-shot init for the compose stack: Airflow metadata schema, the admin login, the monitoring schema.
# Safe to run again: every step is idempotent.
set -euo pipefail

: "${AIRFLOW_ADMIN_USER:?set AIRFLOW_ADMIN_USER in .env}"
: "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD in .env}"
: "${MLMON_DATABASE_URL:?set MLMON_DATABASE_URL in .env}"

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

mlmon db upgrade
