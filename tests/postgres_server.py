"""A throw-away PostgreSQL server for tests: Debian's binaries, a data folder in /tmp, trust
authentication on 127.0.0.1 only, fsync off. Gone (process and folder) when the block ends.

Raises ``PostgresUnavailable`` (tests skip with its message) where the binaries are missing or
the server will not start. PostgreSQL refuses to run as root: as root it runs as the
``postgres`` user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.api.background_server import free_port


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise PostgresUnavailable(f"{name} not found: install Debian's postgresql (`make setup` as root does)")
    return found


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL; yields the admin URL ``postgresql://muse@127.0.0.1:PORT/postgres``."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="muse-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres", "postgres")
        except LookupError as e:
            raise PostgresUnavailable("running as root and there is no postgres user to run PostgreSQL as") from e
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode:
            raise PostgresUnavailable(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", "muse", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start")
        try:
            yield f"postgresql://muse@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, check=False
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def new_database(admin_url: str) -> str:
    """Create an empty database on the server of ``admin_url``; returns its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
