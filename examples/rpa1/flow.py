"""rpa1 (sequential): migrate rpa_db, read survey responses from SurveyHub,
score them, write the results to rpa_db in one batch."""

from __future__ import annotations

from typing import Any

from common import SURVEY_RESPONSES, UPSERT_PROCESSED, score
from prefect import flow, get_run_logger, task

from dbflow import DatabaseManager


@task
def process_survey_data(survey_responses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    get_run_logger().info("Processing %d survey responses", len(survey_responses))
    return [score(r, "rpa1") for r in survey_responses]


@flow(name="rpa1-database-workflow")
def rpa1_workflow() -> dict[str, Any]:
    logger = get_run_logger()
    with DatabaseManager("rpa_db") as rpa_db, DatabaseManager("SurveyHub") as survey_hub:
        migrations = rpa_db.run_migrations()
        logger.info(
            "rpa_db migrations: applied %s, now at %s",
            migrations["applied"] or "none",
            migrations["current_version"],
        )
        responses = survey_hub.execute_query(SURVEY_RESPONSES, {"processed": 0})
        processed = process_survey_data(responses)
        written = rpa_db.execute_many(UPSERT_PROCESSED, processed)
        summary = rpa_db.execute_query(
            "SELECT count(*) AS surveys, round(avg(satisfaction_score), 2) AS average_score "
            "FROM rpa1_processed_surveys WHERE status = :status",
            {"status": "completed"},
        )[0]
        logger.info(
            "Wrote %d rows to rpa1_processed_surveys: %d scored (average satisfaction %s of 5), "
            "%d could not be read",
            written,
            summary["surveys"],
            summary["average_score"],
            written - summary["surveys"],
        )
        return {
            "surveys_processed": len(processed),
            "responses_found": len(responses),
            "rows_written": written,
            "scored": summary["surveys"],
            "average_score": summary["average_score"],
            "migrations_applied": migrations["applied"],
            "schema_version": migrations["current_version"],
            "pool": rpa_db.get_pool_status(),
        }
