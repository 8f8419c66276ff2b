# The project's Airflow image: the official image at the pinned Airflow version, the project's pinned
# dependencies, and the provider package installed (the triggerer imports triggers from it).
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11

COPY --chown=airflow:root requirements.txt /opt/project/requirements.txt
RUN pip install --no-cache-dir -r /opt/project/requirements.txt

COPY --chown=airflow:root pyproject.toml README.md /opt/project/
COPY --chown=airflow:root plugins /opt/project/plugins
RUN pip install --no-cache-dir --no-deps -e /opt/project

COPY --chown=airflow:root sandbox /opt/project/sandbox
COPY --chown=airflow:root include /opt/project/include
COPY --chown=airflow:root dags /opt/project/dags
ENV PYTHONPATH=/opt/project
WORKDIR /opt/project
