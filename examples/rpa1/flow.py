"""rpa1: read survey responses from SurveyHub, score them, write to rpa_db.

The original design's sequential flow, on dbflow. Run it through
``examples/demo.py`` (which provides the databases) or against your own
``.env`` configuration.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from prefect import flow, get_run_logger, task

from dbflow import DatabaseManager


def calculate_satisfaction_score(response_data: dict[str, Any]) -> float:
    ratings = [int(response_data.get(f"question_{i}", 3)) for i in range(1, 6)]
    return round(sum(ratings) / len(ratings), 2)


@task
def process_survey_data(survey_responses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    logger = get_run_logger()
    logger.info("Processing %d survey responses", len(survey_responses))
    now = dt.datetime.now(dt.timezone.utc)
    processed = []
    for response in survey_responses:
        try:
            data = response["response_data"]
            if isinstance(data, str):
                data = json.loads(data)
            score: float | None = calculate_satisfaction_score(data)
            status = "completed"
        except (ValueError, TypeError, KeyError):
            score, status = None, "failed"
        processed.append(
            {
                "survey_id": response["survey_id"],
                "customer_id": response["customer_id"],
                "satisfaction_score": score,
                "processed_at": now,
                "status": status,
            }
        )
    return processed


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
        responses = survey_hub.execute_query(
            "SELECT survey_id, customer_id, response_data, submitted_at "
            "FROM survey_responses WHERE processed = :processed ORDER BY survey_id",
            {"processed": 0},
        )
        processed = process_survey_data(responses)
        written = rpa_db.execute_many(
            """INSERT INTO rpa1_processed_surveys
                   (survey_id, customer_id, satisfaction_score, processed_at, status)
               VALUES (:survey_id, :customer_id, :satisfaction_score, :processed_at, :status)
               ON CONFLICT (survey_id) DO UPDATE
                   SET satisfaction_score = EXCLUDED.satisfaction_score,
                       processed_at = EXCLUDED.processed_at, status = EXCLUDED.status""",
            processed,
        )
        summary = rpa_db.execute_query(
            "SELECT count(*) AS surveys, round(avg(satisfaction_score), 2) AS average_score "
            "FROM rpa1_processed_surveys WHERE status = :status",
            {"status": "completed"},
        )[0]
        logger.info("Wrote %d rows; rpa_db now holds %s", written, summary)
        return {
            "surveys_processed": len(processed),
            "responses_found": len(responses),
            "rows_written": written,
            "average_score": summary["average_score"],
            "migrations_applied": migrations["applied"],
            "schema_version": migrations["current_version"],
            "pool": rpa_db.get_pool_status(),
        }
