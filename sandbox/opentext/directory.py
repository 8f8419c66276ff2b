"""The tenants' directory: which tenants the service serves, their OAuth clients, and their users with
passwords and groups, as OpenText Directory Services holds them for a real tenant.

Loaded from a JSON file (``--directory``, the shipped ``directory.json`` by default)::

    {"tenants": {"sandbox": {
        "clients": {"sandbox": {"secret": "sandbox", "groups": ["airflow-service"]}},
        "users": {"sme.reviewer@example.com": {"password": "...", "groups": ["annotation-sme"]}}}}}

A client acts as its own user (its ``groups`` say which service tasks it may complete); people log in
with the password grant. Users added later (``PUT /sandbox/users/{email}``) are kept in SQLite, so a
restart keeps them; the file's entries are written again at every start.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.opentext.errors import BadRequest
from sandbox.opentext.storage import Store

DEFAULT_DIRECTORY = Path(__file__).with_name("directory.json")


class DirectoryError(ValueError):
    """The directory file cannot be used; the message names the file and the entry."""


def _password_digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _groups(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
        raise DirectoryError(f"{where}: groups must be a list of group names")
    return list(value)


@dataclass
class Tenant:
    clients: dict[str, str] = field(default_factory=dict)
    """Client id → secret."""
    client_groups: dict[str, list[str]] = field(default_factory=dict)


class Directory:
    def __init__(self, store: Store, tenants: dict[str, Tenant]):
        if not tenants:
            raise DirectoryError("the directory names no tenant")
        self.store = store
        self.tenants = tenants

    @classmethod
    def load(cls, store: Store, path: Path, extra_clients: dict[str, str]) -> Directory:
        """Read ``path``; ``extra_clients`` (from ``--client``) are added to every tenant."""
        try:
            entries = json.loads(Path(path).read_text())["tenants"]
            if not isinstance(entries, dict) or not entries:
                raise TypeError("'tenants' is not an object naming at least one tenant")
        except (OSError, ValueError, KeyError, TypeError) as broken:
            raise DirectoryError(f"{path}: not a usable directory ({broken})") from None
        unusable = [t for t in entries if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", str(t))]
        if unusable or not all(isinstance(entry, dict) for entry in entries.values()):
            raise DirectoryError(
                f"{path}: each tenant is an object under a plain id (letters, digits, '-', '_'); "
                f"not usable: {unusable or [t for t, e in entries.items() if not isinstance(e, dict)]}"
            )
        tenants = {tenant_id: Tenant() for tenant_id in entries}
        directory = cls(store, tenants)
        for tenant_id, entry in entries.items():
            tenant = tenants[tenant_id]
            for client_id, client in (entry.get("clients") or {}).items():
                where = f"{path}: tenant {tenant_id!r}, client {client_id!r}"
                if not isinstance(client, dict) or not isinstance(client.get("secret"), str):
                    raise DirectoryError(f"{where}: needs a 'secret'")
                tenant.clients[client_id] = client["secret"]
                tenant.client_groups[client_id] = _groups(client.get("groups", []), where)
            tenant.clients.update(extra_clients)
            for email, user in (entry.get("users") or {}).items():
                where = f"{path}: tenant {tenant_id!r}, user {email!r}"
                if not isinstance(user, dict) or not isinstance(user.get("password"), str):
                    raise DirectoryError(f"{where}: needs a 'password'")
                directory.set_user(tenant_id, email, _groups(user.get("groups", []), where), user["password"])
        return directory

    @property
    def default_tenant(self) -> str:
        return next(iter(self.tenants))

    def client_secret(self, tenant_id: str, client_id: str) -> str | None:
        tenant = self.tenants.get(tenant_id)
        return None if tenant is None else tenant.clients.get(client_id)

    def password_matches(self, tenant_id: str, email: str, password: str) -> bool:
        row = self.store.query_one(
            "SELECT password_sha256 FROM directory_users WHERE tenant_id = ? AND email = ?",
            [tenant_id, email],
        )
        return bool(row and row["password_sha256"] and row["password_sha256"] == _password_digest(password))

    def groups_of(self, tenant_id: str, user: str) -> list[str]:
        """A user's groups in a tenant; a client's are its own (``groups`` of its entry)."""
        tenant = self.tenants.get(tenant_id)
        if tenant is not None and user in tenant.client_groups:
            return tenant.client_groups[user]
        row = self.store.query_one(
            "SELECT groups FROM directory_users WHERE tenant_id = ? AND email = ?", [tenant_id, user]
        )
        return row["groups"] if row else []

    def set_user(self, tenant_id: str, email: Any, groups: Any, password: Any = None) -> dict[str, Any]:
        """Add or change a user; without ``password`` an existing user keeps theirs."""
        if not isinstance(email, str) or "@" not in email:
            raise BadRequest(f"a user is named by their e-mail address, got {email!r}")
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise BadRequest("groups must be a list of group names")
        if password is not None and (not isinstance(password, str) or not password):
            raise BadRequest("password must be a non-empty string")
        known = self.store.query_one(
            "SELECT password_sha256 FROM directory_users WHERE tenant_id = ? AND email = ?",
            [tenant_id, email],
        )
        digest = _password_digest(password) if password else (known or {}).get("password_sha256")
        self.store.upsert(
            "directory_users",
            {"tenant_id": tenant_id, "email": email, "password_sha256": digest, "groups": groups},
            ["tenant_id", "email"],
        )
        return {"tenant": tenant_id, "email": email, "groups": groups}

    def users(self, tenant_id: str) -> list[dict[str, Any]]:
        return self.store.query(
            "SELECT email, groups FROM directory_users WHERE tenant_id = ? ORDER BY email", [tenant_id]
        )

    def members_of(self, tenant_id: str, group: str) -> list[str]:
        return [user["email"] for user in self.users(tenant_id) if group in user["groups"]]
