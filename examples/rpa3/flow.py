"""rpa3 (health monitoring and error handling): check prerequisites first,
read with retries, degrade gracefully when the source is unavailable, write
with a deadline, and finish with a health report."""

from __future__ import annotations

from typing import Any

from common import SURVEY_RESPONSES, UPSERT_PROCESSED, score
from prefect import flow, get_run_logger

from dbflow import DatabaseError, DatabaseManager
from dbflow.prefect import database_health_check, validate_database_prerequisites

DATABASES = ["rpa_db", "SurveyHub"]


@flow(name="rpa3-health-monitoring-workflow")
def rpa3_workflow() -> dict[str, Any]:
    logger = get_run_logger()
    if not validate_database_prerequisites(DATABASES, "rpa3"):
        return {"status": "aborted", "reason": "database_health_check_failed"}
    with DatabaseManager("rpa_db") as rpa_db:
        rpa_db.run_migrations()
        try:
            with DatabaseManager("SurveyHub") as hub:
                responses = hub.execute_query_safe(SURVEY_RESPONSES, {"processed": 0})
        except DatabaseError as e:
            # Graceful degradation: report and keep rpa_db's last good state.
            logger.warning("SurveyHub unavailable, nothing new to process: %s", e)
            responses = []
        processed = [score(r, "rpa3") for r in responses]
        written = 0
        if processed:
            with rpa_db.transaction() as tx:
                written = tx.execute_many(UPSERT_PROCESSED, processed)
        slowest = rpa_db.execute_query_with_timing(
            "SELECT customer_id, average_score FROM customer_satisfaction "
            "ORDER BY average_score ASC LIMIT 3"
        )
        logger.info(
            "Least satisfied customers (%s ms): %s",
            slowest["execution_time_ms"],
            slowest["results"],
        )
        metrics = rpa_db.get_metrics()
    final = database_health_check(DATABASES, "rpa3")
    return {
        "status": "success" if responses else "degraded",
        "responses_found": len(responses),
        "rows_written": written,
        "least_satisfied": slowest["results"],
        "final_health": final["overall_status"],
        "health": {name: h["status"] for name, h in final["databases"].items()},
        "least_satisfied_ms": slowest["execution_time_ms"],
        # dbflow's counters for rpa_db's pool (queries, errors, latencies).
        "metrics": metrics,
    }
