#!/usr/bin/env bash
# Entrypoint of every service built from docker/airflow.Dockerfile: export the database URLs built from
# the service's own user/password variables (docker/stack_env.py percent-encodes them), then run the
# command, e.g. the image's own /entrypoint with an Airflow component, or `mlmon ...`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
eval "$(python "$here/stack_env.py")"
exec "$@"
