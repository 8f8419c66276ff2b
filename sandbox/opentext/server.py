"""``python -m sandbox.opentext --port 8091 --db PATH``: run the sandbox service with uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from sandbox.opentext.app import Settings, create_app


def _client(text: str) -> tuple[str, str]:
    client_id, separator, secret = text.partition(":")
    if not separator or not client_id or not secret:
        raise argparse.ArgumentTypeError(f"--client must be ID:SECRET, got '{text}'")
    return client_id, secret


def _member(text: str) -> tuple[str, list[str]]:
    email, separator, groups = text.partition("=")
    if not separator or not email or not groups:
        raise argparse.ArgumentTypeError(f"--member must be EMAIL=GROUP[,GROUP...], got '{text}'")
    return email, [group.strip() for group in groups.split(",") if group.strip()]


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(
        prog="python -m sandbox.opentext",
        description="OpenText Workflow Service sandbox (commands tasks|claim|complete act as a reviewer).",
    )
    arguments.add_argument("--port", type=int, default=8091)
    arguments.add_argument("--host", default="127.0.0.1")
    arguments.add_argument("--db", required=True, help="SQLite file keeping all state across restarts")
    arguments.add_argument(
        "--client",
        type=_client,
        action="append",
        metavar="ID:SECRET",
        help="OAuth client (default sandbox:sandbox)",
    )
    arguments.add_argument("--token-lifetime", type=int, default=3600, metavar="SECONDS")
    arguments.add_argument(
        "--member",
        type=_member,
        action="append",
        default=[],
        metavar="EMAIL=GROUP[,GROUP]",
        help="a reviewer's groups, for candidateOrAssigned queries (or PUT /sandbox/users/EMAIL)",
    )
    arguments.add_argument("--timer-interval", type=float, default=1.0, metavar="SECONDS")
    arguments.add_argument("--log-level", default="warning")
    return arguments


def main(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(
        db_path=options.db,
        clients=dict(options.client or [("sandbox", "sandbox")]),
        token_lifetime_seconds=options.token_lifetime,
        users=dict(options.member),
        timer_interval_seconds=options.timer_interval,
    )
    uvicorn.run(create_app(settings), host=options.host, port=options.port, log_level=options.log_level)
    return 0
