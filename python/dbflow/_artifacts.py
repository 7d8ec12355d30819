"""Results people can look at in Prefect: a table artifact of a health
check, a markdown artifact of the migrations a run applied. Only inside a
flow or task run, and only when Prefect is already imported."""

from __future__ import annotations

import re
import sys
from typing import Any


def _in_run() -> bool:
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _key(*parts: str) -> str:
    """Prefect's artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def health_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, h in report["databases"].items():
        migrations = h.get("migration_status")
        version = pending = None
        if isinstance(migrations, dict):
            version = migrations.get("current_version")
            pending = ", ".join(migrations.get("pending_migrations") or []) or "none"
        elif migrations == "read_only":
            version, pending = "read-only", "none"
        rows.append(
            {
                "database": name,
                "type": h.get("database_type"),
                "status": h["status"],
                "response_time_ms": h.get("response_time_ms"),
                "schema_version": version,
                "pending_migrations": pending,
            }
        )
    return rows


def publish_health(report: dict[str, Any], flow_name: str) -> None:
    if not _in_run():
        return
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        table=health_rows(report),
        key=_key("dbflow-health", flow_name),
        description=f"dbflow health check: {report['overall_status']}",
    )


def _migration_markdown(database: str, report: dict[str, Any], status: dict[str, Any]) -> str:
    took = {a["version"]: a["execution_time_ms"] for a in status.get("applied_migrations", [])}
    scripts = {a["version"]: a["script"] for a in status.get("applied_migrations", [])}
    lines = [
        f"# Migrations applied to `{database}`",
        "",
        f"Now at **{report['current_version'] or 'no version'}**.",
        "",
        "| version | script | duration |",
        "|---|---|---|",
    ]
    for version in report["applied"]:
        lines.append(f"| {version} | {scripts.get(version, '')} | {took.get(version, '?')} ms |")
    for script in report.get("repeatable", []):
        lines.append(f"| (repeatable) | {script} | |")
    if report.get("baselined"):
        lines.append(f"| {report['baselined']} | baseline | |")
    return "\n".join(lines) + "\n"


def wants_migration_report(db: Any, report: dict[str, Any]) -> bool:
    applied = report["applied"] or report.get("repeatable") or report.get("baselined")
    return bool(applied) and not report.get("dry_run") and db.migration_artifact and _in_run()


def publish_migrations(db: Any, report: dict[str, Any], status: dict[str, Any]) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=_migration_markdown(db.database_name, report, status),
        key=_key("dbflow-migrations", db.database_name),
        description=f"dbflow: migrations applied to {db.database_name}",
    )


async def apublish_migrations(db: Any, report: dict[str, Any], status: dict[str, Any]) -> None:
    from prefect.artifacts import acreate_markdown_artifact

    await acreate_markdown_artifact(
        markdown=_migration_markdown(db.database_name, report, status),
        key=_key("dbflow-migrations", db.database_name),
        description=f"dbflow: migrations applied to {db.database_name}",
    )
