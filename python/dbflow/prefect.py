"""Prefect integration: health-check tasks with the original design's return
shapes, and a ``DatabaseCredentials`` block as an alternative to ``.env``
files. Needs ``pip install dbflow[prefect]``; ``import dbflow`` does not.

    from dbflow.prefect import DatabaseCredentials, database_health_check
    DatabaseCredentials(connection_string="postgresql://...", pool_size=5).save("rpa-db")
    db = DatabaseManager("rpa_db", credentials=DatabaseCredentials.load("rpa-db"))
"""

from __future__ import annotations

from typing import Any, Literal

try:
    from prefect import get_run_logger, task
    from prefect.blocks.abstract import DatabaseBlock
    from pydantic import Field, SecretStr
except ModuleNotFoundError as missing:  # pragma: no cover - exercised in a subprocess test
    raise ModuleNotFoundError(
        f"dbflow.prefect needs Prefect ({missing.name} is not installed): install dbflow with "
        'its Prefect extra, pip install "dbflow[prefect] @ /path/to/dbflow" (or '
        '"<the dbflow wheel>[prefect]"), or pip install "prefect>=3.8,<3.9"',
        name=missing.name,
    ) from missing

from dbflow import health_check_all
from dbflow._artifacts import publish_health
from dbflow._dbblock import DatabaseBlockMixin

__all__ = ["DatabaseCredentials", "database_health_check", "validate_database_prerequisites"]


class DatabaseCredentials(DatabaseBlockMixin, DatabaseBlock):  # type: ignore[misc]
    """A database's connection settings, stored by Prefect (the connection
    string as a secret). Also Prefect's ``DatabaseBlock``: ``fetch_one``,
    ``fetch_many``, ``fetch_all``, ``execute``, ``execute_many`` (and
    ``afetch_one`` ... for asyncio), as prefect-sqlalchemy's
    ``SqlAlchemyConnector`` offers them (see ``dbflow._dbblock``), and
    ``call_procedure`` / ``acall_procedure`` for stored procedures."""

    _block_type_name = "dbflow Database Credentials"
    _block_type_slug = "dbflow-database-credentials"

    connection_string: SecretStr = Field(
        description="postgresql://, mssql://, JDBC or ADO.NET connection string"
    )
    database_type: Literal["postgresql", "sqlserver"] | None = Field(
        default=None, description="detected from the connection string when empty"
    )
    database_name: str | None = Field(
        default=None,
        description="the name dbflow knows this database by (default: the block's name)",
    )
    pool_size: int | None = None
    max_overflow: int | None = None
    pool_timeout: float | None = None
    pool_pre_ping: bool | None = None
    pool_recycle: float | None = None
    query_timeout: float | None = None

    def settings(self) -> dict[str, Any]:
        """The settings as dbflow's configuration keys (the secret included)."""
        return {
            "connection_string": self.connection_string.get_secret_value(),
            "type": self.database_type,
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout,
            "pool_pre_ping": self.pool_pre_ping,
            "pool_recycle": self.pool_recycle,
            "query_timeout": self.query_timeout,
        }


def _health_report(database_names: list[str], flow_name: str) -> dict[str, Any]:
    logger = get_run_logger()
    logger.info("Starting database health check for %s", database_names)
    report = health_check_all(database_names, flow_name=flow_name)
    report["flow_name"] = flow_name
    for name, status in report["databases"].items():
        logger.info("%s: %s (%s ms)", name, status["status"], status.get("response_time_ms", "N/A"))
        if status.get("error"):
            logger.warning("%s error: %s", name, status["error"])
    logger.info("Database health check completed: %s", report["overall_status"])
    publish_health(report, flow_name)
    return report


@task(retries=1, retry_delay_seconds=10, task_run_name="health-check-{database_names}")
def database_health_check(database_names: list[str], flow_name: str) -> dict[str, Any]:
    """Check several databases concurrently: ``{"flow_name", "overall_status",
    "databases": {name: health}, "timestamp", ...}``."""
    return _health_report(database_names, flow_name)


@task(task_run_name="validate-db-prerequisites")
def validate_database_prerequisites(database_names: list[str], flow_name: str) -> bool:
    """True when every database is usable (healthy or degraded)."""
    logger = get_run_logger()
    report = _health_report(database_names, flow_name)
    if report["overall_status"] in ("healthy", "degraded") and all(
        d["status"] in ("healthy", "degraded") for d in report["databases"].values()
    ):
        logger.info("Database prerequisites validated successfully")
        return True
    logger.error("Database prerequisites failed: %s", report["overall_status"])
    for name, status in report["databases"].items():
        if status["status"] != "healthy":
            logger.error("%s: %s", name, status.get("error") or status["status"])
    return False
