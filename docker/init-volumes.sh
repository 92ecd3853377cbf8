#!/usr/bin/env bash
# Run as root by the init: the named volumes (created owned by the image's airflow user, UID 50000) are
# handed to AIRFLOW_UID with group 0, as the official image expects, so any `id -u` can write them.
set -euo pipefail

: "${AIRFLOW_UID:?set AIRFLOW_UID in .env (id -u on Linux)}"
for dir in ${MLMON_VOLUME_DIRS:-/opt/airflow/logs /opt/airflow/auth /opt/airflow/models /opt/airflow/mlmon}; do
    mkdir -p "$dir"
    chown -R "${AIRFLOW_UID}:0" "$dir"
    chmod -R u+rwX,g+rwX "$dir"
    echo "volume $dir: owner ${AIRFLOW_UID}:0"
done
