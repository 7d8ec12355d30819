"""What differs between the backends in the contract suite: DDL spellings,
how to count a pool's sessions on the server, and the test database."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    types: dict[str, str] = field(default_factory=dict)
    sessions_sql: str = ""
    backend_pid_sql: str = ""
    kill_sql: str = ""

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


def sqlserver(url: str) -> Backend:
    return Backend(
        name="sqlserver",
        url=url,
        types=SQLSERVER_TYPES,
        sessions_sql="SELECT COUNT(*) AS n FROM sys.dm_exec_sessions WHERE program_name = :app",
        backend_pid_sql="SELECT @@SPID AS pid",
        kill_sql="",  # KILL takes no parameters; the test builds it
    )


def with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def mssql_url() -> str | None:
    return os.environ.get("DBFLOW_TEST_MSSQL_URL") or None
