"""What the example flows share: the SurveyHub query and the scoring."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

# Portable SQL: runs unchanged whether SurveyHub is SQL Server or PostgreSQL.
SURVEY_RESPONSES = (
    "SELECT survey_id, customer_id, response_data, submitted_at "
    "FROM survey_responses WHERE processed = :processed ORDER BY survey_id"
)

UPSERT_PROCESSED = """
INSERT INTO rpa1_processed_surveys
    (survey_id, customer_id, satisfaction_score, processed_at, status, error, processed_by)
VALUES
    (:survey_id, :customer_id, :satisfaction_score, :processed_at, :status, :error,
     :processed_by)
ON CONFLICT (survey_id) DO UPDATE
    SET satisfaction_score = EXCLUDED.satisfaction_score, processed_at = EXCLUDED.processed_at,
        status = EXCLUDED.status, error = EXCLUDED.error, processed_by = EXCLUDED.processed_by
"""


def calculate_satisfaction_score(response_data: dict[str, Any]) -> float:
    ratings = [int(response_data.get(f"question_{i}", 3)) for i in range(1, 6)]
    return round(sum(ratings) / len(ratings), 2)


def score(response: dict[str, Any], processed_by: str) -> dict[str, Any]:
    """One survey response → one rpa1_processed_surveys row."""
    try:
        data = response["response_data"]
        if isinstance(data, str):
            data = json.loads(data)
        value: float | None = calculate_satisfaction_score(data)
        status, error = "completed", None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        value, status, error = None, "failed", f"{type(e).__name__}: {e}"
    return {
        "survey_id": response["survey_id"],
        "customer_id": response["customer_id"],
        "satisfaction_score": value,
        "processed_at": dt.datetime.now(dt.timezone.utc),
        "status": status,
        "error": error,
        "processed_by": processed_by,
    }
