"""``python -m sandbox.opentext`` runs the service; ``python -m sandbox.opentext tasks|claim|complete``
acts as a reviewer against a running one."""

from __future__ import annotations

import sys

from sandbox.opentext import cli


def main(argv: list[str]) -> int:
    if argv and argv[0] in cli.COMMANDS:
        return cli.main(argv)
    # The reviewer commands stay quick by not importing the web stack they do not need.
    from sandbox.opentext import server

    return server.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
