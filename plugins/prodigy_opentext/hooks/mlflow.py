"""Hook for an MLflow tracking server: the MLOps platform where training runs record the data they used.

MLflow's client reads its server's credentials and HTTP settings from its own ``MLFLOW_TRACKING_*`` and
``MLFLOW_HTTP_REQUEST_*`` variables. The hook sets them from the ``mlflow`` connection for the duration
of each call and puts back what was there afterwards, so credentials come from the connection only
(ambient ones are hidden meanwhile), are masked in task logs, and stay in no environment.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from prodigy_opentext._opentext.settings import tls_verify
from prodigy_opentext.failures import ConnectionMissing

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from mlflow import MlflowClient
    from mlflow.entities import Run

DEFAULT_EXPERIMENT = "annotation-releases"
DIGEST_LENGTH = 36
"""The most of a dataset digest MLflow keeps (its tracking store refuses longer ones)."""
CLIENT_VARIABLES = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
)
"""What the MLflow client reads per request; during a call each is the connection's, or unset."""
_client_environment = threading.RLock()


class MLflowRun(TypedDict):
    """The MLflow run a dataset was logged on, and where people open it."""

    run_id: str
    experiment_id: str
    run_url: str


@dataclass(frozen=True)
class MLflowSettings:
    """What the hook needs from an ``mlflow`` connection, checked once, naming the bad field."""

    tracking_uri: str
    experiment: str = DEFAULT_EXPERIMENT
    ui_url: str = ""
    """Where people open the server's UI, when it is not the tracking URI (a container's hostname)."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True
    timeout: int = 30
    max_retries: int = 3

    @classmethod
    def from_connection(cls, conn: Connection) -> MLflowSettings:
        where = f"MLflow connection {conn.conn_id!r}"
        extra = conn.extra_dejson
        tracking_uri = server_url(conn.host, conn.port, where)
        if conn.password and not conn.login:
            raise ValueError(f"{where}: a password needs its login (the server's basic-auth user)")
        if extra.get("token") and conn.login:
            raise ValueError(f"{where}: give login/password or extra 'token', not both")
        experiment = extra.get("experiment_name") or DEFAULT_EXPERIMENT
        if not isinstance(experiment, str) or not experiment.strip():
            raise ValueError(f"{where}: extra 'experiment_name' must be a name, e.g. {DEFAULT_EXPERIMENT!r}")
        return cls(
            tracking_uri=tracking_uri,
            experiment=experiment.strip(),
            ui_url=server_url(extra["ui_url"], None, f"{where}, extra 'ui_url'")
            if extra.get("ui_url")
            else tracking_uri,
            username=conn.login or None,
            password=conn.password or None,
            token=extra.get("token") or None,
            verify=tls_verify(extra.get("verify", True)),
            timeout=whole_number(extra.get("timeout", 30), f"{where}: extra 'timeout'"),
            max_retries=whole_number(extra.get("max_retries", 3), f"{where}: extra 'max_retries'"),
        )

    def client_variables(self) -> dict[str, str]:
        """The MLflow client's own settings for this connection (unset ones are left out)."""
        variables = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.timeout),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
        }
        if self.username:
            variables["MLFLOW_TRACKING_USERNAME"] = self.username
            variables["MLFLOW_TRACKING_PASSWORD"] = self.password or ""
        if self.token:
            variables["MLFLOW_TRACKING_TOKEN"] = self.token
        if self.verify is False:
            variables["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
        elif isinstance(self.verify, str):
            variables["MLFLOW_TRACKING_SERVER_CERT_PATH"] = self.verify
        return variables


def server_url(host: str | None, port: int | None, where: str) -> str:
    """``host`` as an http(s) URL without a trailing slash (``port`` added when it names none)."""
    url = (host or "").strip().rstrip("/")
    if not url:
        raise ValueError(f"{where}: host must be the tracking server's URL, e.g. http://mlflow:5000")
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    try:
        named_port = parts.port  # raises for a port that is not a number
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}: {host!r} is not an http:// or https:// URL of an MLflow server")
    if port and named_port is None:
        url = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    return url


def whole_number(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or str(number) != str(value).strip():
        raise ValueError(f"{where} must be a whole number of 0 or more, not {value!r}")
    return number


class MLflowTrackingHook(BaseHook):
    """Record in an MLflow tracking server which dataset a training run used.

    Connection fields: host = the tracking server's URL (``http://mlflow:5000``), login/password = its
    basic-auth user (MLflow's ``basic-auth`` app or a proxy in front of it); extra: ``token`` (a bearer
    token instead), ``experiment_name`` (``annotation-releases``), ``ui_url`` (where people open the UI,
    when not at the host's URL), ``verify`` (TLS: a boolean or a CA bundle path), ``timeout`` (seconds
    per request, 30) and ``max_retries`` (3, on 429/5xx and connection errors).
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow tracking server"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def settings(self) -> MLflowSettings:
        try:
            connection = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            raise ConnectionMissing.named(self.mlflow_conn_id, self.conn_type) from None
        settings = MLflowSettings.from_connection(connection)
        for secret in (settings.password, settings.token):
            if secret:
                mask_secret(secret)
        return settings

    def get_conn(self) -> MlflowClient:
        return self.client

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.settings.tracking_uri)

    @contextmanager
    def connected(self) -> Iterator[MlflowClient]:
        """The client, with this connection's settings as the MLflow client's variables for the block."""
        variables = self.settings.client_variables()
        with _client_environment:
            saved = {name: os.environ.pop(name, None) for name in CLIENT_VARIABLES}
            os.environ.update(variables)
            try:
                yield self.client
            finally:
                for name, value in saved.items():
                    os.environ.pop(name, None)
                    if value is not None:
                        os.environ[name] = value

    def test_connection(self) -> tuple[bool, str]:
        from mlflow.exceptions import MlflowException

        try:
            with self.connected() as client:
                client.search_experiments(max_results=1)
        except (MlflowException, ValueError) as err:
            return False, str(err)
        return True, f"Connected to MLflow at {self.settings.tracking_uri}"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.settings.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def log_dataset_input(
        self,
        identity: Mapping[str, str],
        *,
        name: str,
        sha256: str,
        source_uri: str,
        context: str = "training",
        run_name: str | None = None,
        profile: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> MLflowRun:
        """Log a dataset as an input of the run whose tags are ``identity``, in the connection's experiment.

        One run per identity: the first call creates it (with ``identity`` and ``tags``) and ends it
        FINISHED; a rerun finds it and logs nothing twice. The dataset is an ``mlflow.data`` dataset of
        ``name``, its digest the first :data:`DIGEST_LENGTH` hex digits of ``sha256`` (the most MLflow
        keeps; the full one is in its profile), its source ``source_uri``, logged in ``context``.
        """
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import Dataset, DatasetInput, InputTag, RunStatus
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():  # file:// resolves as MLflow's local source, registered twice
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(source_uri)
        # MLflow's MetaDataset leaves its (unused) profile abstract; the entity built from it carries ours
        config = MetaDataset(source, name=name, digest=sha256[:DIGEST_LENGTH]).to_dict()  # type: ignore[abstract]
        dataset = Dataset(**config, profile=json.dumps({"sha256": sha256, **(profile or {})}))
        with self.connected() as client:
            experiment_id = self.experiment_id(client)
            run = self.run_with_tags(client, experiment_id, identity)
            if run is None:
                run = client.create_run(experiment_id, tags={**(tags or {}), **identity}, run_name=run_name)
            run_id = run.info.run_id
            inputs = client.get_run(run_id).inputs
            logged = inputs.dataset_inputs if inputs is not None else []
            if any((i.dataset.name, i.dataset.digest) == (name, dataset.digest) for i in logged):
                self.log.info("%s is an input of MLflow run %s already", name, run_id)
            else:
                tag = InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)
                client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset, tags=[tag])])
                self.log.info(
                    "logged %s (digest %s) as a %s input of run %s", name, dataset.digest, context, run_id
                )
            if run.info.status != RunStatus.to_string(RunStatus.FINISHED):
                client.set_terminated(run_id)
        return MLflowRun(
            run_id=run_id, experiment_id=experiment_id, run_url=self.run_url(experiment_id, run_id)
        )

    def experiment_id(self, client: MlflowClient) -> str:
        """The connection's experiment, created when the server has none of that name."""
        from mlflow.exceptions import MlflowException

        name = self.settings.experiment
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return client.create_experiment(name)
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = client.get_experiment_by_name(name)  # another task created it meanwhile
        if found is None or found.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} is deleted: restore it (`mlflow experiments restore`) or set "
                f"another extra 'experiment_name' on connection {self.mlflow_conn_id!r}"
            )
        return found.experiment_id

    @staticmethod
    def run_with_tags(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> Run | None:
        """The oldest active run of the experiment that carries every one of ``tags``, or None."""
        for key, value in tags.items():
            if "`" in key or "'" in value:
                raise ValueError(
                    f"MLflow run tag {key!r}={value!r}: no backquote in keys, no quote in values"
                )
        query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
        found = client.search_runs(
            [experiment_id], query, max_results=1, order_by=["attributes.start_time ASC"]
        )
        return found[0] if found else None
