"""The ``dbflow`` command: migrations from the shell, for deploy scripts.

    dbflow migrate rpa_db [--target V3] [--dry-run] [--placeholder name=value ...]
    dbflow baseline rpa_db --version 5
    dbflow info rpa_db
    dbflow validate rpa_db
    dbflow undo rpa_db --target V1
    dbflow repair rpa_db
    dbflow new rpa_db "Add phone column"
    dbflow health rpa_db SurveyHub
    dbflow pool rpa_db
    dbflow config check
    dbflow --version

Common options: --env ENVIRONMENT, --flow FLOW, --envs-dir DIR,
--migrations-dir ROOT, --json.

Exit codes, the same for every command:

    0  done; every database checked is healthy
    1  a database answered but is not in order: a failed or invalid
       migration, a failing statement, a degraded or unhealthy health check
    2  bad usage or configuration: an invalid or unknown setting, a database
       that is not configured, no migrations directory
    3  a database could not be reached: refused, no answer, DNS, TLS, or a
       rejected login

When several databases differ, the first of 2, 3, 1 that applies wins: fix
the configuration, then the connection, then the database.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dbflow import (
    ConfigManager,
    ConfigurationError,
    DatabaseConnectionError,
    DatabaseError,
    DatabaseManager,
    MigrationError,
    __version__,
    health_check_all,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

# `dbflow --help` ends with the commands at a glance and the exit codes.
_EPILOG = "commands:\n" + (__doc__ or "").split("\n", 2)[2].rstrip()
_PRECEDENCE = (EXIT_USAGE, EXIT_UNREACHABLE, EXIT_FAILED)


def _worst(codes: Sequence[int]) -> int:
    """The exit code of several outcomes (see the module's table)."""
    return next((c for c in _PRECEDENCE if c in codes), EXIT_OK)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--env",
        dest="environment",
        help="environment (default: DBFLOW_ENVIRONMENT, PREFECT_ENVIRONMENT, development)",
    )
    common.add_argument("--flow", dest="flow_name", help="flow name for flow-specific keys")
    common.add_argument("--envs-dir", help="directory holding .env.<environment> files")
    common.add_argument("--migrations-dir", help="root holding <database>/V*.sql directories")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    parser = argparse.ArgumentParser(
        prog="dbflow",
        description="dbflow database tools: migrations, health and configuration checks.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", parents=[common], help="apply pending migrations")
    migrate.add_argument("database")
    migrate.add_argument("--target", help="stop at this version")
    migrate.add_argument(
        "--out-of-order",
        action="store_true",
        help="also apply files older than the current version",
    )
    migrate.add_argument(
        "--dry-run",
        action="store_true",
        help="print the SQL that would run, in order, and change nothing",
    )
    migrate.add_argument(
        "--placeholder",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a ${NAME} placeholder's value (repeatable; beats the settings)",
    )
    baseline = sub.add_parser(
        "baseline", parents=[common], help="put an existing database under migrations"
    )
    baseline.add_argument("database")
    baseline.add_argument("--version", default="1", help="the version to baseline at (default 1)")
    baseline.add_argument("--description", default="<< Flyway Baseline >>")
    info = sub.add_parser("info", parents=[common], help="applied and pending migrations")
    info.add_argument("database")
    validate = sub.add_parser("validate", parents=[common], help="check files against the history")
    validate.add_argument("database")
    validate.add_argument("--out-of-order", action="store_true")
    undo = sub.add_parser("undo", parents=[common], help="run undo files down to a version")
    undo.add_argument("database")
    undo.add_argument("--target", required=True, help="the version to end at")
    repair = sub.add_parser(
        "repair", parents=[common], help="drop failed entries, accept checksums"
    )
    repair.add_argument("database")
    new = sub.add_parser("new", parents=[common], help="create the next migration file")
    new.add_argument("database")
    new.add_argument("description")
    health = sub.add_parser("health", parents=[common], help="health of one or more databases")
    health.add_argument("databases", nargs="+")
    pool = sub.add_parser("pool", parents=[common], help="connection pool status of a database")
    pool.add_argument("database")
    config = sub.add_parser(
        "config",
        parents=[common],
        help="config check: validate every configured database and try to connect",
    )
    config.add_argument("action", choices=["check"], help="check: validate and try every database")
    return parser


def _manager(args: argparse.Namespace) -> DatabaseManager:
    config = ConfigManager(args.environment, args.flow_name, args.envs_dir)
    return DatabaseManager(args.database, config=config, migrations_dir=args.migrations_dir)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _info_table(status: dict[str, Any]) -> str:
    rows = [("Version", "Description", "State", "Installed on", "Duration")]
    for a in status["applied_migrations"]:
        rows.append(
            (
                a["version"],
                a["description"],
                a["state"],
                (a["installed_on"] or "")[:19].replace("T", " "),
                f"{a['execution_time_ms']} ms",
            )
        )
    for p in status["pending_details"]:
        rows.append((p["version"], p["description"], "pending", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    directory = status["migrations_dir"] or "(no migrations directory: read-only)"
    lines.append("")
    lines.append(f"current version: {status['current_version'] or 'none'}; directory: {directory}")
    return "\n".join(lines)


def _explain(error: str) -> str:
    """One plain-words reason for a failed connection."""
    text = error.lower()
    for needle, reason in [
        ("dns", "the host name does not resolve (DNS)"),
        ("refused", "the server refused the connection (not running, or wrong host/port)"),
        ("connect timeout", "no answer from the server (firewall, or a wrong host)"),
        ("deadline", "no answer from the server in time"),
        ("tls", "the TLS handshake failed (certificate or encryption settings)"),
        ("certificate", "the TLS handshake failed (certificate or encryption settings)"),
        ("authentication failed", "the login was rejected (user or password)"),
        ("login failed", "the login was rejected (user or password)"),
        ("does not exist", "the database does not exist"),
    ]:
        if needle in text:
            return reason
    return "the connection failed"


def _health(args: argparse.Namespace) -> int:
    config = ConfigManager(args.environment, args.flow_name, args.envs_dir)
    report = health_check_all(args.databases, config=config, migrations_dir=args.migrations_dir)
    lines = [f"overall: {report['overall_status']}"]
    for name, h in report["databases"].items():
        detail = f"{h.get('response_time_ms', '-')} ms" if h["status"] != "not_configured" else ""
        migrations = h.get("migration_status")
        if isinstance(migrations, dict) and "current_version" in migrations:
            at = migrations["current_version"] or "no version yet"
            pending = migrations["pending_migrations"]
            state = f"pending: {', '.join(pending)}" if pending else "up to date"
            detail += f", schema at {at}, {state}"
        elif migrations == "read_only":
            detail += ", read-only (no migrations)"
        line = f"  {name}: {h['status']}" + (f" — {detail}" if detail else "")
        if h.get("error"):
            line += f"\n      {h['error']}"
        lines.append(line)
    _print(args, report, "\n".join(lines))
    return _worst([_health_code(h) for h in report["databases"].values()])


def _health_code(health: dict[str, Any]) -> int:
    if health["status"] == "not_configured":
        return EXIT_USAGE
    if not health.get("connection"):
        return EXIT_UNREACHABLE
    return EXIT_OK if health["status"] == "healthy" else EXIT_FAILED


def _pool(args: argparse.Namespace) -> int:
    with _manager(args) as db:
        db.ping()
        status = db.get_pool_status()
        metrics = db.get_metrics()
    text = "\n".join(
        [
            f"{status['database_name']} ({status['database_type']})",
            f"  pool_size={status['pool_size']} max_overflow={status['max_overflow']}",
            f"  checked_in={status['checked_in']} checked_out={status['checked_out']} "
            f"overflow={status['overflow']} waiting={status['waiting']} "
            f"invalid={status['invalid']}",
            f"  opened={status['connections_opened']} closed={status['connections_closed']} "
            f"acquire p50={metrics['pool_acquire_ms']['p50']} ms",
        ]
    )
    _print(args, {"pool": status, "metrics": metrics}, text)
    return EXIT_OK


def _config_check(args: argparse.Namespace) -> int:
    import os

    config = ConfigManager(args.environment, args.flow_name, args.envs_dir)
    env = config.environment.upper()
    scopes = ["GLOBAL"] + ([args.flow_name.upper()] if args.flow_name else [])
    pattern = re.compile(rf"^{env}_({'|'.join(scopes)})_(.+)_CONNECTION_STRING$")
    names = sorted(
        {
            m.group(2).lower()
            for key in [*config.file_keys(), *os.environ]
            if (m := pattern.match(key)) is not None
        }
    )
    unknown = config.unknown_keys()
    results: dict[str, dict[str, Any]] = {}
    codes: list[int] = [EXIT_USAGE] if unknown or not names else []
    for name in names:
        entry: dict[str, Any] = {"database_name": name}
        try:
            resolved = config.database_config(name)
            entry.update(
                database_type=resolved["database_type"],
                connection_string=resolved["connection_string"],
                source_key=resolved["source_key"],
            )
            with DatabaseManager(name, config=config) as db:
                health = db.health_check()
            if not health["connection"]:
                entry.update(status="unreachable", code=EXIT_UNREACHABLE)
            elif not health["query_test"]:
                entry.update(status="failed", code=EXIT_FAILED)
            else:
                entry.update(status="ok", code=EXIT_OK)
            if health["error"] and entry["status"] != "ok":
                entry["reason"] = _explain(health["error"])
                entry["error"] = health["error"]
        except ConfigurationError as e:
            entry.update(
                status="misconfigured",
                code=EXIT_USAGE,
                reason="the configuration is invalid",
                error=str(e),
            )
        codes.append(entry["code"])
        results[name] = entry
    lines = [f"environment {config.environment}: {len(names)} database(s) configured"]
    if config.env_file is None:
        lines.append("  (no env file found; settings come from the process environment)")
    if not names:
        lines.append(
            f"  no key {env}_GLOBAL_<DATABASE>_CONNECTION_STRING was found in the env file "
            "or the process environment"
        )
    for name, entry in results.items():
        target = entry.get("connection_string", "")
        lines.append(f"  {name}: {entry['status']}  {target}")
        if entry["status"] != "ok":
            lines.append(f"      {entry['reason']}: {entry['error']}")
    for message in unknown:
        lines.append(f"  unknown setting: {message}")
    data = {"environment": config.environment, "databases": results, "unknown_keys": unknown}
    _print(args, data, "\n".join(lines))
    return _worst(codes)


def _new(args: argparse.Namespace) -> int:
    directory: Path | None = None
    try:
        manager = _manager(args)
        found = manager.migrations_dir
        directory = Path(found) if found is not None else None
        manager.close()
    except ConfigurationError:
        directory = None  # creating a file needs no database settings
    if directory is None:
        root = Path(args.migrations_dir or "migrations")
        # The runner matches the database's directory whatever its case.
        same = sorted(
            p
            for p in (root.iterdir() if root.is_dir() else [])
            if p.is_dir() and p.name.lower() == args.database.lower()
        )
        directory = same[0] if same else root / args.database
    directory.mkdir(parents=True, exist_ok=True)
    # The runner's rule: V or v, any case of .sql; undo files (U) are not versions.
    existing = [
        m
        for p in directory.iterdir()
        if p.is_file()
        and (m := re.match(r"[Vv](\d+)(?:[._]\d+)*__.*\.sql$", p.name, re.IGNORECASE))
    ]
    width = max((len(m.group(1)) for m in existing), default=3)
    number = max((int(m.group(1)) for m in existing), default=0) + 1
    slug = re.sub(r"[^0-9A-Za-z]+", "_", args.description).strip("_") or "migration"
    path = directory / f"V{number:0{width}d}__{slug}.sql"
    path.write_text(f"-- {args.description}\n")
    _print(args, {"created": str(path)}, f"created {path}")
    return EXIT_OK


def _placeholders(given: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigurationError(
                f"--placeholder {item!r}: write NAME=VALUE, e.g. --placeholder table_name=people"
            )
        values[name] = value
    return values


def _migrate_text(report: dict[str, Any]) -> str:
    if report.get("dry_run"):
        lines = ["dry run: nothing was changed"]
        if report.get("baselined"):
            lines.append(f"-- would baseline at {report['baselined']}")
        for part in report["statements"]:
            where = f"{part['script']} line {part['line']}"
            version = f" ({part['version']})" if part["version"] else ""
            lines.append(f"-- {part['kind']}: {where}{version}")
            lines.append(part["sql"].rstrip())
        if not report["statements"]:
            lines.append("nothing to apply")
        return "\n".join(lines)
    applied = report["applied"] + report.get("repeatable", [])
    now = report["current_version"] or "no version"
    baselined = f"baselined at {report['baselined']}; " if report.get("baselined") else ""
    if not applied:
        return f"{baselined}nothing to apply; already at {now}"
    return f"{baselined}applied {', '.join(applied)}; now at {now}"


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logger = logging.getLogger("dbflow")
    handler = logging.StreamHandler(sys.stderr)
    # Progress of long runs (the runner logs each file as it applies it) for
    # the commands that change things; warnings for every command, named.
    changes = args.command in ("migrate", "baseline", "undo", "repair") and not args.json
    handler.setLevel(logging.INFO if changes else logging.WARNING)
    handler.setFormatter(_CliFormatter())
    if args.command == "config":
        # config check lists misspelt keys itself, once.
        handler.addFilter(lambda r: "is not a dbflow setting" not in r.getMessage())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if args.command == "new":
            return _new(args)
        if args.command == "health":
            return _health(args)
        if args.command == "pool":
            return _pool(args)
        if args.command == "config":
            return _config_check(args)
        with _manager(args) as db:
            if args.command == "migrate":
                report = db.run_migrations(
                    args.target,
                    out_of_order=args.out_of_order,
                    placeholders=_placeholders(args.placeholder),
                    dry_run=args.dry_run,
                )
                _print(args, report, _migrate_text(report))
            elif args.command == "baseline":
                done = db.baseline_migrations(args.version, args.description)
                _print(args, done, f"baselined at {done['baseline_version']}")
            elif args.command == "info":
                status = db.get_migration_status()
                _print(args, status, _info_table(status))
            elif args.command == "validate":
                db.validate_migrations(out_of_order=args.out_of_order)
                _print(args, {"valid": True}, "migrations are valid")
            elif args.command == "undo":
                undone = db.rollback_migrations(args.target)
                _print(args, {"undone": undone}, f"undone: {', '.join(undone) or 'nothing'}")
            elif args.command == "repair":
                result = db.repair_migrations()
                _print(
                    args,
                    result,
                    f"removed {result['removed_failed']} failed entries, "
                    f"realigned {result['realigned']} checksums",
                )
        return EXIT_OK
    except ConfigurationError as e:
        print(f"dbflow: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseConnectionError as e:
        print(f"dbflow: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (MigrationError, DatabaseError) as e:
        print(f"dbflow: {e}", file=sys.stderr)
        return EXIT_FAILED


class _CliFormatter(logging.Formatter):
    """Progress as plain lines; warnings and errors say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"dbflow: {record.levelname.lower()}: {message}"
        return message


def main() -> None:
    raise SystemExit(run())


if __name__ == "__main__":
    main()
