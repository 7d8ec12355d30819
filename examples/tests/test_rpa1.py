"""Testing the rpa1 flow both ways: with mocks (no database at all), and
against a real throwaway rpa_db with its migrations applied."""

from __future__ import annotations

import json

import pytest
from rpa1.flow import rpa1_workflow

from dbflow.testing import MockDatabaseManager, patch_databases

RESPONSES = [
    {
        "survey_id": i,
        "customer_id": 100 + i,
        "response_data": json.dumps({f"question_{q}": 4 for q in range(1, 6)}),
        "submitted_at": None,
    }
    for i in range(1, 6)
] + [{"survey_id": 6, "customer_id": 106, "response_data": "not json", "submitted_at": None}]


def survey_hub() -> MockDatabaseManager:
    hub = MockDatabaseManager("SurveyHub", database_type="sqlserver")
    hub.add_result(lambda sql, params: "FROM survey_responses" in sql, RESPONSES)
    return hub


def test_rpa1_with_mocks() -> None:
    hub, rpa = survey_hub(), MockDatabaseManager("rpa_db")
    rpa.migrations.pending = ["V001", "V002", "V003"]
    rpa.add_result(
        lambda sql, params: "avg(satisfaction_score)" in sql, [{"surveys": 5, "average_score": 4}]
    )
    with patch_databases({"SurveyHub": hub, "rpa_db": rpa}):
        result = rpa1_workflow()
    assert result["responses_found"] == 6 and result["rows_written"] == 6
    assert result["migrations_applied"] == ["V001", "V002", "V003"]
    writes = rpa.queries_matching("INSERT INTO rpa1_processed_surveys")
    assert len(writes) == 1 and len(writes[0].params) == 6
    statuses = [row["status"] for row in writes[0].params]
    assert statuses.count("completed") == 5 and statuses.count("failed") == 1


def test_rpa1_survives_a_survey_hub_outage() -> None:
    hub = survey_hub()
    hub.fail_on_call(1, hub.connection_error("SurveyHub is down"))
    with patch_databases({"SurveyHub": hub, "rpa_db": MockDatabaseManager("rpa_db")}):
        with pytest.raises(Exception, match="SurveyHub is down"):
            rpa1_workflow()


@pytest.mark.dbflow_database("rpa_db", migrations_dir="migrations")
def test_rpa1_against_a_real_database(dbflow_database) -> None:  # type: ignore[no-untyped-def]
    with patch_databases({"SurveyHub": survey_hub()}):
        result = rpa1_workflow()
    assert result["rows_written"] == 6
    rows = dbflow_database.execute_query(
        "SELECT status, count(*) AS n FROM rpa1_processed_surveys GROUP BY status ORDER BY status"
    )
    assert rows == [{"status": "completed", "n": 5}, {"status": "failed", "n": 1}]
    summary = dbflow_database.execute_query(
        "SELECT * FROM customer_satisfaction ORDER BY customer_id"
    )
    assert len(summary) == 5
