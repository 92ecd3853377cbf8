# Airflow with the monitoring library installed, for docker-compose.yml.
# Build from the repository root: docker build -f docker/airflow.Dockerfile .
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root . /opt/mlmon

# The image's own installed set (Airflow, its providers, their dependencies, as Airflow's constraints
# resolved them) is frozen and used as the constraints of this install: nothing already installed can
# move, only what the project adds that the image lacks (great-expectations, adbc, scikit-learn, ...)
# is resolved. A project pin the image cannot satisfy fails the build here instead of silently moving a
# provider's dependency; `pip check` then proves the result consistent. (The repository's own
# constraints.txt pins the same project on a plain venv: `make test` and `make demo`.)
RUN pip list --format=freeze > /tmp/image-constraints.txt \
    && pip install --no-cache-dir -c /tmp/image-constraints.txt "/opt/mlmon[airflow]" \
    && pip check \
    && rm /tmp/image-constraints.txt \
    && mkdir -p /opt/airflow/auth /opt/airflow/mlmon /opt/airflow/models \
    && chmod -R g+rwX /opt/airflow/auth /opt/airflow/mlmon /opt/airflow/models

ENV MLMON_CONFIG_DIR=/opt/airflow/configs
