"""rpa2 (concurrent): score every response in its own mapped task on a
thread pool, then write them in batches, each batch a mapped task opening
its own ``DatabaseManager("rpa_db")`` — all sharing one pool."""

from __future__ import annotations

from typing import Any

from common import SURVEY_RESPONSES, UPSERT_PROCESSED, score
from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from dbflow import DatabaseManager


@task
def process_survey_response(response: dict[str, Any]) -> dict[str, Any]:
    return score(response, "rpa2")


@task
def write_batch(batch: list[dict[str, Any]]) -> int:
    with DatabaseManager("rpa_db") as db:
        return db.execute_many(UPSERT_PROCESSED, batch)


@flow(name="rpa2-concurrent-workflow", task_runner=ThreadPoolTaskRunner(max_workers=8))
def rpa2_workflow(batch_size: int = 50) -> dict[str, Any]:
    logger = get_run_logger()
    with DatabaseManager("rpa_db") as rpa_db:
        rpa_db.run_migrations()
    with DatabaseManager("SurveyHub") as hub:
        responses = hub.execute_query(SURVEY_RESPONSES, {"processed": 0})
    processed = [f.result() for f in process_survey_response.map(responses)]
    batches = [processed[i : i + batch_size] for i in range(0, len(processed), batch_size)]
    written = sum(f.result() for f in write_batch.map(batches))
    failed = sum(1 for p in processed if p["status"] == "failed")
    logger.info(
        "rpa2 wrote %d rows in %d batches (%d failed to score)", written, len(batches), failed
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
