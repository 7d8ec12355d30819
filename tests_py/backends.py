"""What differs between the backends in the contract suite: DDL spellings,
how to count a pool's sessions on the server, and the test database."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    types: dict[str, str] = field(default_factory=dict)
    sessions_sql: str = ""
    backend_pid_sql: str = ""
    kill_sql: str = ""
    #: "direct", or "pgbouncer": PostgreSQL through PgBouncer's transaction pooling.
    via: str = "direct"
    #: Settings every database on this backend gets (e.g. prepared_statements).
    settings: dict[str, str] = field(default_factory=dict)
    #: Counts a pool's sessions where `sessions_sql` cannot (PgBouncer's clients).
    count_sessions: Callable[[str], int] | None = None
    #: PgBouncer's admin console: a command's rows.
    console: Callable[[str], list[dict[str, str]]] | None = None

    #: "postgresql", "sqlserver" (Microsoft) or "babelfish" (Babelfish for
    #: PostgreSQL / Aurora), read from the server once.
    product: str = "postgresql"

    def sleep_sql(self, seconds: float) -> str:
        """A statement that runs for `seconds` on the server."""
        if self.name == "postgresql":
            return f"SELECT pg_sleep({seconds})"
        if self.product == "babelfish":  # no WAITFOR in Babelfish 4.2
            return f"EXEC pg_sleep {seconds}"
        whole, frac = divmod(seconds, 1)
        return f"WAITFOR DELAY '00:00:{int(whole):02d}.{round(frac * 1000):03d}'"

    @property
    def missing_table_numbers(self) -> set[int]:
        """SQL Server's error number for a missing object (Babelfish differs)."""
        return {33557097} if self.product == "babelfish" else {208}

    def ddl(self, template: str) -> str:
        """`{int}`, `{text}`, ... in `template` → this backend's type names."""
        return template.format(**self.types)


POSTGRES_TYPES = {
    "int": "integer",
    "bigint": "bigint",
    "text": "text",
    "numeric": "numeric(12, 4)",
    "float": "double precision",
    "bool": "boolean",
    "bytes": "bytea",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "uuid": "uuid",
    "identity": "integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}

SQLSERVER_TYPES = {
    "int": "int",
    "bigint": "bigint",
    "text": "nvarchar(max)",
    "numeric": "numeric(12, 4)",
    "float": "float",
    "bool": "bit",
    "bytes": "varbinary(max)",
    "date": "date",
    "time": "time(6)",
    "timestamp": "datetime2(6)",
    "timestamptz": "datetimeoffset(6)",
    "uuid": "uniqueidentifier",
    "identity": "int IDENTITY(1, 1) PRIMARY KEY",
}


def postgres(url: str) -> Backend:
    return Backend(
        name="postgresql",
        url=url,
        types=POSTGRES_TYPES,
        sessions_sql="SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = :app",
        backend_pid_sql="SELECT pg_backend_pid() AS pid",
        kill_sql="SELECT pg_terminate_backend(:pid)",
    )


def pgbouncer(url: str, admin_url: str) -> Backend:
    """PostgreSQL through PgBouncer in transaction-pooling mode, with dbflow's
    setting for it; sessions are PgBouncer's clients, counted on its console."""

    def console(command: str) -> list[dict[str, str]]:
        out = subprocess.run(
            ["psql", admin_url, "--csv", "-c", command],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        return list(csv.DictReader(io.StringIO(out)))

    def count(app: str) -> int:
        return sum(1 for row in console("SHOW CLIENTS") if row["application_name"] == app)

    return Backend(
        name="postgresql",
        url=url,
        types=POSTGRES_TYPES,
        backend_pid_sql="SELECT pg_backend_pid() AS pid",
        kill_sql="SELECT pg_terminate_backend(:pid)",
        via="pgbouncer",
        settings={"prepared_statements": "false"},
        count_sessions=count,
        console=console,
    )


def pgbouncer_urls() -> tuple[str, str] | None:
    url = os.environ.get("DBFLOW_TEST_PGBOUNCER_URL")
    admin = os.environ.get("DBFLOW_TEST_PGBOUNCER_ADMIN_URL")
    return (url, admin) if url and admin else None


def sqlserver(url: str, product: str) -> Backend:
    return Backend(
        name="sqlserver",
        url=url,
        types=SQLSERVER_TYPES,
        sessions_sql="SELECT COUNT(*) AS n FROM sys.dm_exec_sessions WHERE program_name = :app",
        backend_pid_sql="SELECT @@SPID AS pid",
        kill_sql="",  # KILL takes no parameters; the test builds it
        product=product,
    )


def sqlserver_product(version: str) -> str:
    """'babelfish' or 'sqlserver', from the server's @@VERSION."""
    return "babelfish" if "babelfish" in version.lower() else "sqlserver"


def with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def mssql_url() -> str | None:
    return os.environ.get("DBFLOW_TEST_MSSQL_URL") or None
