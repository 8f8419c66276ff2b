"""OAuth2 token endpoint and bearer-token checks, as the OpenText API gateway does them.

``POST /tenants/{tenant}/oauth2/token`` takes a JSON or form body (or HTTP Basic client credentials)
with ``grant_type`` ``client_credentials`` or ``password``. The tenant, the client and (for the password
grant) the user and their password must be in the tenant's directory. A token is bound to the tenant it
was issued for: it reaches that tenant's data only. Tokens live in SQLite, so a restart keeps clients
logged in; they expire after the configured lifetime (wall-clock) and can all be revoked at once by the
fault-injection endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox.opentext.directory import Directory
from sandbox.opentext.errors import gateway_fault
from sandbox.opentext.storage import Store

INBOX_CLIENT = "inbox"
"""The client id of tokens issued to people signing in to the reviewer inbox."""


@dataclass(frozen=True)
class Principal:
    """Who a token was issued to: a user's e-mail (password grant) or the client id."""

    user: str
    client_id: str
    tenant_id: str


class AuthenticationFailed(Exception):
    def __init__(self, faultstring: str, errorcode: str):
        super().__init__(faultstring)
        self.faultstring = faultstring
        self.errorcode = errorcode

    def response(self) -> JSONResponse:
        return gateway_fault(401, self.faultstring, self.errorcode)


class OAuthError(Exception):
    """An RFC 6749 token-endpoint error."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description}, status_code=self.status
        )


class TokenIssuer:
    def __init__(self, store: Store, directory: Directory, lifetime_seconds: int):
        self.store = store
        self.directory = directory
        self.lifetime_seconds = lifetime_seconds

    def issue(self, tenant_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
        if not client_id or not client_secret:
            raise OAuthError(400, "invalid_request", "client_id and client_secret are required")
        if tenant_id not in self.directory.tenants:
            raise OAuthError(401, "invalid_client", f"tenant '{tenant_id}' is not served here")
        if self.directory.client_secret(tenant_id, client_id) != client_secret:
            raise OAuthError(
                401,
                "invalid_client",
                f"client '{client_id}' is unknown in tenant '{tenant_id}' or its secret is wrong",
            )
        grant_type = fields.get("grant_type")
        if grant_type == "client_credentials":
            user = client_id
        elif grant_type == "password":
            user, password = fields.get("username"), fields.get("password")
            if not user or not password:
                raise OAuthError(400, "invalid_request", "the password grant needs username and password")
            if not self.directory.password_matches(tenant_id, user, password):
                raise OAuthError(
                    400,
                    "invalid_grant",
                    f"user '{user}' is unknown in tenant '{tenant_id}' or the password is wrong",
                )
        else:
            raise OAuthError(
                400,
                "unsupported_grant_type",
                f"grant_type '{grant_type}' is not client_credentials or password",
            )
        return self._issue(tenant_id, client_id, user)

    def log_in(self, tenant_id: str, email: str, password: str) -> dict[str, Any]:
        """A token for a person signing in to the inbox (the service's own first-party client)."""
        if tenant_id not in self.directory.tenants or not self.directory.password_matches(
            tenant_id, email, password
        ):
            raise OAuthError(400, "invalid_grant", "the e-mail address or the password is wrong")
        return self._issue(tenant_id, INBOX_CLIENT, email)

    def _issue(self, tenant_id: str, client_id: str, user: str) -> dict[str, Any]:
        token, now = secrets.token_urlsafe(32), time.time()
        self.store.insert(
            "tokens",
            {
                "token": token,
                "client_id": client_id,
                "user_id": user,
                "tenant_id": tenant_id,
                "issued_at": now,
                "expires_at": now + self.lifetime_seconds,
            },
        )
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.lifetime_seconds,
            "scope": "otds:roles",
        }

    def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("Invalid access token", "oauth.v2.InvalidAccessToken")
        row = self.store.query_one("SELECT * FROM tokens WHERE token = ?", [token.strip()])
        if row is None:
            raise AuthenticationFailed("Invalid Access Token", "keymanagement.service.invalid_access_token")
        if row["revoked"]:
            raise AuthenticationFailed(
                "Access Token not approved", "keymanagement.service.access_token_not_approved"
            )
        if row["expires_at"] <= time.time():
            raise AuthenticationFailed("Access Token expired", "keymanagement.service.access_token_expired")
        return Principal(user=row["user_id"], client_id=row["client_id"], tenant_id=row["tenant_id"])

    def revoke_all(self) -> int:
        with self.store.transaction() as connection:
            return connection.execute("UPDATE tokens SET revoked = 1 WHERE revoked = 0").rowcount


async def _token_request_fields(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            fields = json.loads(raw or b"{}")
        except ValueError:
            raise OAuthError(400, "invalid_request", "the body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise OAuthError(400, "invalid_request", "the body must be a JSON object")
    else:
        fields = dict(parse_qsl(raw.decode("utf-8", errors="replace")))
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            client_id, _, client_secret = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError(400, "invalid_request", "the Basic authorization header is malformed") from None
        fields.setdefault("client_id", client_id)
        fields.setdefault("client_secret", client_secret)
    return fields


token_router = APIRouter()


@token_router.post("/tenants/{tenant_id}/oauth2/token")
async def issue_token(tenant_id: str, request: Request) -> JSONResponse:
    issuer: TokenIssuer = request.app.state.tokens
    try:
        return JSONResponse(issuer.issue(tenant_id, await _token_request_fields(request)))
    except OAuthError as error:
        return error.response()
