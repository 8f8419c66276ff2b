"""Write the secrets docker-compose.yaml requires into ``.env``: ``python -m scripts.compose_env``.

docker-compose.yaml has no default for the Fernet key (it encrypts connection passwords in Airflow's
database), the API's JWT secret (it signs every token the UI and the workers use) or the token OpenText's
models call Airflow back with: a default in a public file is a secret everybody knows. This writes random
ones into ``.env`` beside the compose file, readable by its owner only, and keeps values the file already
has, so running it again changes nothing.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

from scripts.configure_airflow_home import REPO

GENERATED = {
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode("ascii"),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "OPENTEXT_CALLBACK_TOKEN": lambda: secrets.token_urlsafe(32),
}


def ensure_secrets(env_file: Path) -> list[str]:
    """Add each missing secret to ``env_file``; returns the names it added."""
    lines = env_file.read_text().splitlines() if env_file.exists() else []
    present = {
        line.split("=", 1)[0].strip() for line in lines if "=" in line and not line.lstrip().startswith("#")
    }
    added = [name for name in GENERATED if name not in present]
    if added:
        lines += [f"{name}={GENERATED[name]()}" for name in added]
        env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)
    return added


def main(argv: list[str]) -> int:
    env_file = Path(argv[0]) if argv else REPO / ".env"
    added = ensure_secrets(env_file)
    print(f"{env_file}: {'added ' + ', '.join(added) if added else 'every secret already set'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
