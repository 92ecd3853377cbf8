# Airflow with the monitoring library installed from the committed pins, for docker-compose.yml.
# Build from the repository root: docker build -f docker/airflow.Dockerfile .
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root . /opt/mlmon

# The base image's Airflow version is repeated so pip cannot move it; constraints.txt pins the rest.
RUN pip install --no-cache-dir -c /opt/mlmon/constraints.txt \
        "apache-airflow==${AIRFLOW_VERSION}" "/opt/mlmon[airflow]" \
    && mkdir -p /opt/airflow/auth /opt/airflow/mlmon /opt/airflow/models

ENV MLMON_CONFIG_DIR=/opt/airflow/configs
