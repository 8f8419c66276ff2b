"""What a hook needs from an ``opentext_workflow`` connection, checked once, naming the bad field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prodigy_opentext._opentext.retries import RetryPolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection

API_PREFIX = "/workflow/v1"
GRANT_TYPES = ("client_credentials", "password")


@dataclass(frozen=True)
class OpenTextSettings:
    """What a hook needs from an ``opentext_workflow`` connection, validated once."""

    root_url: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    grant_type: str = "client_credentials"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    verify: bool | str = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    start_settle_seconds: float = 1.0
    """How long a process start waits for racing starts of the same businessKey before converging."""

    @classmethod
    def from_connection(cls, conn: Connection) -> OpenTextSettings:
        extra = conn.extra_dejson
        where = f"OpenText connection {conn.conn_id!r}"
        if not conn.host:
            raise ValueError(f"{where}: host must be the root URL, e.g. https://na-1-dev.api.opentext.com")
        if not extra.get("tenant_id"):
            raise ValueError(f"{where}: extra field 'tenant_id' is missing")
        if not conn.login or not conn.password:
            raise ValueError(f"{where}: login (client id) and password (client secret) are required")
        grant_type = extra.get("grant_type", "client_credentials")
        if grant_type not in GRANT_TYPES:
            raise ValueError(f"{where}: extra 'grant_type' is {grant_type!r}; expected one of {GRANT_TYPES}")
        if grant_type == "password" and not (extra.get("username") and extra.get("password")):
            raise ValueError(f"{where}: grant_type 'password' needs extra 'username' and 'password'")
        defaults = RetryPolicy()
        return cls(
            root_url=normalise_root_url(conn.host),
            tenant_id=str(extra["tenant_id"]),
            client_id=conn.login,
            client_secret=conn.password,
            grant_type=grant_type,
            username=extra.get("username"),
            password=extra.get("password"),
            timeout=float(extra.get("timeout", 30.0)),
            verify=tls_verify(extra.get("verify", True)),
            start_settle_seconds=float(extra.get("start_settle_seconds", 1.0)),
            retry=RetryPolicy(
                max_attempts=int(extra.get("max_retries", defaults.max_attempts - 1)) + 1,
                budget=float(extra.get("retry_budget", defaults.budget)),
            ),
        )

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/tenants/{self.tenant_id}/oauth2/token"

    def api_url(self, path: str) -> str:
        return f"{self.root_url}{API_PREFIX}/{path.lstrip('/')}"

    def token_form(self) -> dict[str, str]:
        form = {
            "grant_type": self.grant_type,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if self.grant_type == "password":
            form |= {"username": self.username or "", "password": self.password or ""}
        return form


def tls_verify(value: Any) -> bool | str:
    """The ``verify`` extra: a boolean (also as the strings a form or env var gives) or a CA bundle path."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return value


def normalise_root_url(host: str) -> str:
    """Accept ``host``, ``https://host`` or the API base ``https://host/workflow/v1``; return the root URL."""
    root = host.strip().rstrip("/")
    if "://" not in root:
        root = f"https://{root}"
    return root.removesuffix(API_PREFIX)
