"""Async twin of :class:`~prodigy_opentext.hooks.opentext.OpenTextWorkflowHook` for triggers (aiohttp).

It speaks the same protocol (:mod:`prodigy_opentext._opentext`: settings, token cache, retry policy, answer
decoding, the decision probe and its driver) as the sync hook; only the transport is written here.
"""

from __future__ import annotations

import asyncio
import ssl
import time
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


class OpenTextWorkflowAsyncHook(BaseHook):
    """Read OpenText Workflow Service from an event loop, with the sync hook's token and retry behaviour.

    Use as an async context manager; it holds one HTTP session for its lifetime::

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
        self._tokens = TokenCache()
        self._settings: OpenTextSettings | None = None
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
        import aiohttp

        settings = await self.settings()
        if isinstance(settings.verify, str):
            tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=settings.verify)
        else:
            tls = ssl.create_default_context() if settings.verify else False
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            connector=aiohttp.TCPConnector(ssl=tls),
            headers={"Accept": "application/json"},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        import aiohttp

        if self._session is None:
            raise RuntimeError("use OpenTextWorkflowAsyncHook as `async with OpenTextWorkflowAsyncHook(...)`")
        try:
            async with self._session.request(method, url, **kwargs) as response:
                text = await response.text()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as err:
            raise unreachable(err, method=method, url=url) from err
        return decode_answer(
            response.status, text, response.headers.get("Retry-After"), method=method, url=url
        )

    async def _bearer(self) -> dict[str, str]:
        now = time.monotonic()
        token = self._tokens.current(now)
        if token is None:
            settings = await self.settings()
            answer = await self._send("POST", settings.token_url, data=settings.token_form())
            token = self._tokens.store(answer, now)
            await amask_secret(token)
        return {"Authorization": f"Bearer {token}"}

    async def _exchange(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> Any:
        """One call with a bearer token; a 401 fetches a new token and tries once more."""
        url, params = (await self.settings()).api_url(path), query_params(params)
        try:
            return await self._send(method, url, params=params, json=body, headers=await self._bearer())
        except OpenTextAuthError as err:
            if err.status != 401:
                raise
            self.log.info("OpenText refused the cached token; fetching a new one")
            self._tokens.clear()
            return await self._send(method, url, params=params, json=body, headers=await self._bearer())

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
