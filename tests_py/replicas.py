"""A PostgreSQL primary and its streaming standby on loopback, for the
failover tests: two real servers (Debian's PostgreSQL, the one
scripts/pg-server uses), password (SCRAM) authentication over TCP, the
standby made with ``pg_basebackup -R``, ports chosen free.

Replication is synchronous (``synchronous_standby_names = '*'``): a COMMIT
returns only once the standby has the transaction, which is what a setup
that must lose nothing on failover runs. ``crash_primary()`` stops the
primary with ``-m immediate`` (no shutdown checkpoint, clients see their
connections die); ``promote()`` makes the standby the primary.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PASSWORD = "replica-test-pw"
USER = "flow"
DATABASE = "flowdb"


def available() -> str | None:
    """Why the pair cannot be made here (None: it can)."""
    if not _bin_dir():
        return "PostgreSQL's server programs are not installed (scripts/pg-server installs them)"
    if (
        os.geteuid() == 0
        and shutil.which("runuser") is None
        and not Path("/usr/sbin/runuser").exists()
    ):
        return "running PostgreSQL as root needs runuser"
    return None


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReplicatedPair:
    def __init__(self) -> None:
        self._bin = _bin_dir() or ""
        self._dir = Path(tempfile.mkdtemp(prefix="dbflow-replicas-"))
        self.primary_port = _free_port()
        self.standby_port = _free_port()
        self._primary = self._dir / "primary"
        self._standby = self._dir / "standby"
        self._owner()
        try:
            self._init_primary()
            self._start(self._primary, self.primary_port)
            self.psql(self.primary_port, f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            self.psql(self.primary_port, f"CREATE DATABASE {DATABASE} OWNER {USER}")
            self._run(
                f"{self._bin}/pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
                *("-D", str(self._standby), "-R", "-X", "stream", "-c", "fast"),
            )
            self._start(self._standby, self.standby_port)
            # Only now, and only on the primary: with no standby attached
            # every commit would wait, and the standby, once promoted, has none.
            self.psql(self.primary_port, "ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.psql(self.primary_port, "SELECT pg_reload_conf()")
            self._wait_synchronous()
        except BaseException:
            self.close()
            raise

    def url(self, *ports: int, **options: str) -> str:
        """The flow's connection string naming `ports` (in that order)."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"postgresql://{USER}:{PASSWORD}@{hosts}/{DATABASE}" + (f"?{query}" if query else "")

    def psql(self, port: int, sql: str, database: str = "postgres") -> str:
        """Run `sql` as the superuser over TCP; its output, unaligned."""
        return self._run(
            f"{self._bin}/psql",
            *("-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database),
            *("-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql),
        ).strip()

    def crash_primary(self) -> None:
        self._ctl(self._primary, "stop", "-m", "immediate")

    def promote(self) -> None:
        self._ctl(self._standby, "promote")

    def close(self) -> None:
        for data in (self._primary, self._standby):
            if (data / "postmaster.pid").exists():
                self._ctl(data, "stop", "-m", "immediate", check=False)
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- the servers ------------------------------------------------------

    def _owner(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres", "postgres")

    def _init_primary(self) -> None:
        pwfile = self._dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        pwfile.chmod(0o644)
        self._run(
            f"{self._bin}/initdb",
            *("-D", str(self._primary), "-U", "postgres", "--auth=scram-sha-256"),
            *(f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"),
        )
        pwfile.unlink()
        # initdb's pg_hba.conf already lets 127.0.0.1 replicate with a password.
        with open(self._primary / "postgresql.conf", "a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                "wal_level = replica\n"
                "max_wal_senders = 4\n"
                "hot_standby = on\n"
                "synchronous_commit = on\n"
                "max_connections = 50\n"
            )

    def _start(self, data: Path, port: int) -> None:
        self._ctl(
            data, "start", "-w", "-l", str(data / "server.log"), "-o", f"-p {port} -k {self._dir}"
        )

    def _wait_synchronous(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.psql(
                self.primary_port, "SELECT string_agg(sync_state, ',') FROM pg_stat_replication"
            )
            if state == "sync":
                return
            time.sleep(0.1)
        raise RuntimeError(f"the standby did not become a synchronous replica within {timeout} s")

    def _ctl(self, data: Path, *args: str, check: bool = True) -> None:
        self._run(f"{self._bin}/pg_ctl", "-D", str(data), *args, check=check)

    def _run(self, *command: str, check: bool = True) -> str:
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        env = {
            **os.environ,
            "PGPASSWORD": PASSWORD,
            "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin",
        }
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=self._dir, timeout=120
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done.stdout
