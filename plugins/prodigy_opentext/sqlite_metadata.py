"""Connection arguments for an Airflow metadata database on SQLite (``[database] sql_alchemy_connect_args``).

SQLite lets one writer in at a time, and Python's driver gives up after 5 s waiting for the lock. On a
loaded machine a LocalExecutor installation (scheduler, dag-processor, triggerer, api-server and the task
processes, all on one file) exceeds that, and the REST API then answers a trigger with 500 "Database error".
Waiting up to 30 s rides out such bursts. Any other database gets no arguments from here, so a home
configured for SQLite and then pointed at PostgreSQL (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``) still
connects.
"""

from airflow.configuration import conf  # loaded already: Airflow's settings read this while configuring

CONNECT_ARGS: dict[str, object] = (
    {"timeout": 30} if conf.get("database", "sql_alchemy_conn", fallback="").startswith("sqlite") else {}
)
