"""All three example flows against a real rpa_db (migrated, throwaway) and a
real SurveyHub — PostgreSQL always, SQL Server too when DBFLOW_TEST_MSSQL_URL
is set — under Prefect's test harness."""

from __future__ import annotations

import pytest
from rpa1.flow import rpa1_workflow
from rpa2.flow import rpa2_workflow
from rpa3.flow import rpa3_workflow

pytestmark = pytest.mark.dbflow_database("rpa_db", migrations_dir="migrations")


def counts(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    rows = db.execute_query(
        "SELECT status, count(*) AS n FROM rpa1_processed_surveys GROUP BY status"
    )
    return {r["status"]: r["n"] for r in rows}


def test_rpa1_sequential(dbflow_database, survey_hub) -> None:  # type: ignore[no-untyped-def]
    result = rpa1_workflow()
    assert result["responses_found"] == 120 and result["rows_written"] == 120
    assert result["schema_version"] == "V004"
    assert counts(dbflow_database) == {"completed": 108, "failed": 12}


def test_rpa2_concurrent_batches(dbflow_database, survey_hub) -> None:  # type: ignore[no-untyped-def]
    result = rpa2_workflow(batch_size=25)
    assert result["rows_written"] == 120 and result["batches"] == 5 and result["failed"] == 12
    pool = result["pool"]
    assert pool["connections_opened"] <= pool["pool_size"] + pool["max_overflow"]
    writers = dbflow_database.execute_query(
        "SELECT processed_by, count(*) AS n FROM rpa1_processed_surveys GROUP BY processed_by"
    )
    assert writers == [{"processed_by": "rpa2", "n": 120}]


def test_rpa3_health_and_errors(dbflow_database, survey_hub) -> None:  # type: ignore[no-untyped-def]
    result = rpa3_workflow()
    assert result["status"] == "success" and result["rows_written"] == 120
    assert result["final_health"] == "healthy"
    assert len(result["least_satisfied"]) == 3
    assert counts(dbflow_database) == {"completed": 108, "failed": 12}
