"""Async twin of :class:`~prodigy_opentext.hooks.opentext.OpenTextWorkflowHook` for triggers (aiohttp).

It speaks the same protocol (:mod:`prodigy_opentext._opentext`: settings, token cache, retry policy, answer
decoding, the decision probe and its driver) as the sync hook; only the transport is written here.

The hooks of one event loop on the same connection (id and settings) share one :class:`SharedClient`:
one HTTP session (one connection pool, one TLS context) and one bearer token. A triggerer runs every
wait in one loop, so a thousand waits cost one token and one pool, not a thousand.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import amask_secret

from prodigy_opentext._opentext.answers import TokenCache, decode_answer, query_params, unreachable
from prodigy_opentext._opentext.decisions import DecisionRead
from prodigy_opentext._opentext.settings import OpenTextSettings
from prodigy_opentext.core.payloads import Decision
from prodigy_opentext.exceptions import OpenTextAuthError, OpenTextError, OpenTextUnavailableError
from prodigy_opentext.failures import ConnectionMissing
from prodigy_opentext.hooks.opentext import OpenTextWorkflowHook

if TYPE_CHECKING:
    from types import TracebackType

    import aiohttp

T = TypeVar("T")


class SharedClient:
    """The session and token the hooks of one event loop share for one connection.

    The session opens with its first user and closes with its last, so a loop that ends (a test's, or a
    triggerer's at shutdown) leaves no open session behind; the token outlives it for the loop's life.
    Nothing here refers to the loop once the session is closed, so a finished loop can be collected.
    """

    def __init__(self) -> None:
        self.tokens = TokenCache()
        self.session: aiohttp.ClientSession | None = None
        self.token_lock = asyncio.Lock()
        self.users = 0

    def acquire(self, settings: OpenTextSettings) -> aiohttp.ClientSession:
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
                connector=aiohttp.TCPConnector(ssl=tls_context(settings.verify)),
                headers={"Accept": "application/json"},
            )
        self.users += 1
        return self.session

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.session is not None:
            session, self.session, self.token_lock = self.session, None, asyncio.Lock()
            await session.close()


ConnectionKey = tuple[str, OpenTextSettings]
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ConnectionKey, SharedClient]]
_SHARED = weakref.WeakKeyDictionary()


def shared_client(conn_id: str, settings: OpenTextSettings) -> SharedClient:
    """The running loop's client for this connection (its id and settings, so an edited connection
    gets its own session and token)."""
    clients = _SHARED.setdefault(asyncio.get_running_loop(), {})
    return clients.setdefault((conn_id, settings), SharedClient())


def tls_context(verify: bool | str) -> ssl.SSLContext | bool:
    """aiohttp's own verifying context for ``True`` (built once per process), none for ``False``, and a
    context on the CA bundle for a path."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


class OpenTextWorkflowAsyncHook(BaseHook):
    """Read OpenText Workflow Service from an event loop, with the sync hook's token and retry behaviour.

    Use as an async context manager; inside it the hook uses its loop's shared session and token
    (:class:`SharedClient`), while the connection's credentials stay with the hook::

        async with OpenTextWorkflowAsyncHook("opentext_default") as hook:
            decision = await hook.read_decision(process_instance_id)
    """

    conn_name_attr = OpenTextWorkflowHook.conn_name_attr
    default_conn_name = OpenTextWorkflowHook.default_conn_name
    conn_type = OpenTextWorkflowHook.conn_type
    hook_name = f"{OpenTextWorkflowHook.hook_name} (async)"

    def __init__(self, opentext_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opentext_conn_id = opentext_conn_id
        self._settings: OpenTextSettings | None = None
        self._shared: SharedClient | None = None
        self._session: aiohttp.ClientSession | None = None

    async def settings(self) -> OpenTextSettings:
        if self._settings is None:
            try:
                connection = await self.aget_connection(self.opentext_conn_id)
            except AirflowNotFoundException:
                raise ConnectionMissing.named(self.opentext_conn_id, self.conn_type) from None
            self._settings = OpenTextSettings.from_connection(connection)
        return self._settings

    async def __aenter__(self) -> OpenTextWorkflowAsyncHook:
        settings = await self.settings()
        self._shared = shared_client(self.opentext_conn_id, settings)
        self._session = self._shared.acquire(settings)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._shared is not None:
            shared, self._shared, self._session = self._shared, None, None
            await shared.release()

    def _in_use(self) -> tuple[SharedClient, aiohttp.ClientSession]:
        if self._shared is None or self._session is None:
            raise RuntimeError("use OpenTextWorkflowAsyncHook as `async with OpenTextWorkflowAsyncHook(...)`")
        return self._shared, self._session

    async def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        import aiohttp

        _, session = self._in_use()
        try:
            async with session.request(method, url, **kwargs) as response:
                text = await response.text()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as err:
            raise unreachable(err, method=method, url=url) from err
        return decode_answer(
            response.status, text, response.headers.get("Retry-After"), method=method, url=url
        )

    async def _bearer(self) -> str:
        """The loop's token for this connection; one hook fetches it while the others wait for it."""
        shared, _ = self._in_use()
        token = shared.tokens.current(time.monotonic())
        if token is None:
            async with shared.token_lock:
                token = shared.tokens.current(time.monotonic())
                if token is None:
                    settings, now = await self.settings(), time.monotonic()
                    answer = await self._send("POST", settings.token_url, data=settings.token_form())
                    token = shared.tokens.store(answer, now)
                    await amask_secret(token)
        return token

    async def _exchange(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> Any:
        """One call with a bearer token; a 401 fetches a new token (once for all the loop's hooks that
        sent the refused one) and tries once more."""
        url, params = (await self.settings()).api_url(path), query_params(params)
        token = await self._bearer()
        try:
            return await self._send(method, url, params=params, json=body, headers=bearer_header(token))
        except OpenTextAuthError as err:
            if err.status != 401:
                raise
            self.log.info("OpenText refused the cached token; fetching a new one")
            self._in_use()[0].tokens.discard(token)
            token = await self._bearer()
            return await self._send(method, url, params=params, json=body, headers=bearer_header(token))

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        policy = (await self.settings()).retry
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return await operation()
            except OpenTextUnavailableError as err:
                delay = policy.next_delay(attempt, time.monotonic() - started, err.retry_after)
                if delay is None:
                    raise
                self.log.warning("%s; retrying in %.1f s", err, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        """Call ``{root}/workflow/v1{path}`` with retries and return the decoded JSON."""
        return await self._retrying(lambda: self._exchange(method, path, params, json))

    async def read_decision(
        self,
        process_instance_id: str,
        task_definition_key: str | None = None,
        decision_variable: str | None = None,
        open_task_key: str | None = None,
    ) -> Decision | None:
        """The reviewers' decision on a process instance, or None while they have not decided
        (:func:`~prodigy_opentext._opentext.decisions.decision_probe` says what counts)."""
        read = DecisionRead(process_instance_id, task_definition_key, decision_variable, open_task_key)
        while read.pending is not None:
            try:
                reply = await self.request("GET", read.pending.path, params=read.pending.params)
            except OpenTextError as err:
                read.failed(err)
            else:
                read.answered(reply)
        return read.decision


def bearer_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
