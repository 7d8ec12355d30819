"""rpa2 (concurrent): split the responses into batches; each batch is one
mapped task on a thread pool that scores its responses and writes them
through its own ``DatabaseManager("rpa_db")`` — all sharing one pool.

A task per batch, not per response: every task run is a few records on
Prefect's server, and 500 one-line tasks keep it busy for seconds after
the flow has finished (the next flow waits on it), for work that takes
microseconds."""

from __future__ import annotations

from typing import Any

from common import SURVEY_RESPONSES, UPSERT_PROCESSED, score
from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from dbflow import DatabaseManager


@task
def score_and_write(batch: list[dict[str, Any]]) -> dict[str, int]:
    scored = [score(response, "rpa2") for response in batch]
    with DatabaseManager("rpa_db") as db:
        written = db.execute_many(UPSERT_PROCESSED, scored)
    return {"written": written, "failed": sum(1 for s in scored if s["status"] == "failed")}


@flow(name="rpa2-concurrent-workflow", task_runner=ThreadPoolTaskRunner(max_workers=8))
def rpa2_workflow(batch_size: int = 50) -> dict[str, Any]:
    logger = get_run_logger()
    with DatabaseManager("rpa_db") as rpa_db:
        rpa_db.run_migrations()
    with DatabaseManager("SurveyHub") as hub:
        responses = hub.execute_query(SURVEY_RESPONSES, {"processed": 0})
    batches = [responses[i : i + batch_size] for i in range(0, len(responses), batch_size)]
    outcomes = [f.result() for f in score_and_write.map(batches)]
    written = sum(o["written"] for o in outcomes)
    failed = sum(o["failed"] for o in outcomes)
    logger.info(
        "Wrote %d rows in %d batches of up to %d, in parallel (%d responses could not be read)",
        written,
        len(batches),
        batch_size,
        failed,
    )
    with DatabaseManager("rpa_db") as rpa_db:
        pool = rpa_db.get_pool_status()
    return {
        "responses_found": len(responses),
        "rows_written": written,
        "batches": len(batches),
        "failed": failed,
        "pool": pool,
    }
