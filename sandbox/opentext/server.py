"""``python -m sandbox.opentext --port 8091 --db PATH [--directory FILE] [--config FILE]``: run the sandbox
with uvicorn."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import uvicorn

from sandbox.opentext.app import Settings, create_app
from sandbox.opentext.directory import DEFAULT_DIRECTORY, DirectoryError


def _client(text: str) -> tuple[str, str]:
    client_id, separator, secret = text.partition(":")
    if not separator or not client_id or not secret:
        raise argparse.ArgumentTypeError(f"--client must be ID:SECRET, got '{text}'")
    return client_id, secret


CONFIG_VARIABLE = "OPENTEXT_SANDBOX_CONFIG"
"""The tenant configuration as JSON text, where no --config file is given (docker-compose.yaml)."""


def _configuration_json(text: str, source: str) -> dict[str, str]:
    try:
        values = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{source}: {error}") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise argparse.ArgumentTypeError(f"{source}: expected a JSON object of strings")
    return values


def _configuration(path: str) -> dict[str, str]:
    try:
        return _configuration_json(Path(path).read_text(), f"--config {path}")
    except OSError as error:
        raise argparse.ArgumentTypeError(f"--config {path}: {error}") from None


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(
        prog="python -m sandbox.opentext",
        description="OpenText Workflow Service sandbox (commands tasks|claim|complete act as a reviewer).",
    )
    arguments.add_argument("--port", type=int, default=8091)
    arguments.add_argument("--host", default="127.0.0.1")
    arguments.add_argument("--db", required=True, help="SQLite file keeping all state across restarts")
    arguments.add_argument(
        "--directory",
        default=str(DEFAULT_DIRECTORY),
        metavar="FILE",
        help="tenants, clients and users with passwords and groups (default: the shipped directory.json)",
    )
    arguments.add_argument(
        "--client",
        type=_client,
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="an OAuth client added to every tenant of the directory",
    )
    arguments.add_argument("--token-lifetime", type=int, default=3600, metavar="SECONDS")
    arguments.add_argument("--timer-interval", type=float, default=1.0, metavar="SECONDS")
    arguments.add_argument(
        "--config",
        type=_configuration,
        default=None,
        metavar="FILE",
        help="tenant configuration for HttpTasks, a JSON object of strings read as ${config.KEY} "
        f"(e.g. airflow_callback_url, airflow_callback_token); default: ${CONFIG_VARIABLE} or none",
    )
    arguments.add_argument("--log-level", default="warning")
    return arguments


def main(argv: list[str]) -> int:
    arguments = parser()
    options = arguments.parse_args(argv)
    if options.config is None:
        try:
            options.config = _configuration_json(os.environ.get(CONFIG_VARIABLE) or "{}", CONFIG_VARIABLE)
        except argparse.ArgumentTypeError as bad:
            arguments.error(str(bad))
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(
        db_path=options.db,
        directory_path=options.directory,
        clients=dict(options.client),
        token_lifetime_seconds=options.token_lifetime,
        timer_interval_seconds=options.timer_interval,
        configuration=options.config,
    )
    try:
        app = create_app(settings)
    except DirectoryError as broken:
        raise SystemExit(f"error: {broken}") from None
    uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level)
    return 0
