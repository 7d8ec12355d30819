"""Example: how a flow project tests its flows with dbflow's pytest plugin
(installing dbflow is enough; the fixtures dbflow_mock and dbflow_database
come with it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))


@pytest.fixture(scope="session", autouse=True)
def prefect_backend() -> Iterator[None]:
    """Flows run against Prefect's temporary local test server."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


SURVEY_TABLE = {
    "postgresql": "CREATE TABLE survey_responses (survey_id int PRIMARY KEY, "
    "customer_id int NOT NULL, response_data varchar(4000) NOT NULL, "
    "submitted_at timestamptz NOT NULL DEFAULT now(), processed int NOT NULL DEFAULT 0)",
    "sqlserver": "CREATE TABLE survey_responses (survey_id int PRIMARY KEY, "
    "customer_id int NOT NULL, response_data nvarchar(4000) NOT NULL, "
    "submitted_at datetimeoffset NOT NULL DEFAULT SYSDATETIMEOFFSET(), "
    "processed int NOT NULL DEFAULT 0)",
}


def survey_rows(count: int) -> list[dict[str, object]]:
    import json

    return [
        {
            "survey_id": i,
            "customer_id": 100 + i % 7,
            "response_data": json.dumps({f"question_{q}": 1 + (i + q) % 5 for q in range(1, 6)})
            if i % 10
            else "not json",
        }
        for i in range(1, count + 1)
    ]


@pytest.fixture(params=["postgresql", "sqlserver"])
def survey_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A real SurveyHub stand-in, on PostgreSQL or (when DBFLOW_TEST_MSSQL_URL
    is set) SQL Server, that ``DatabaseManager("SurveyHub")`` reaches."""
    import os
    import urllib.parse
    import uuid

    from dbflow import ConfigManager
    from dbflow._native import DatabaseManager as Real
    from dbflow.testing import create_test_database, drop_test_database, patch_databases

    backend = request.param
    server = os.environ.get(
        "DBFLOW_TEST_MSSQL_URL" if backend == "sqlserver" else "DBFLOW_TEST_POSTGRES_URL"
    )
    if not server:
        pytest.skip(f"no {backend} server configured for the SurveyHub stand-in")
    name = f"test_surveyhub_{uuid.uuid4().hex[:8]}"
    (tmp_path / ".env.test").write_text(
        f"TEST_GLOBAL_ADMIN_CONNECTION_STRING={server}\n"
        f"TEST_GLOBAL_SURVEYHUB_CONNECTION_STRING="
        f"{urllib.parse.urlunsplit(urllib.parse.urlsplit(server)._replace(path='/' + name))}\n"
        "TEST_GLOBAL_SURVEYHUB_POOL_RELEASE_GRACE=0\n"
    )
    config = ConfigManager("test", envs_dir=tmp_path)
    admin = Real("admin", config=config)
    create_test_database(admin, name)
    try:
        hub = Real("SurveyHub", config=config)
        hub.execute_query(SURVEY_TABLE[backend])
        hub.execute_many(
            "INSERT INTO survey_responses (survey_id, customer_id, response_data) "
            "VALUES (:survey_id, :customer_id, :response_data)",
            survey_rows(120),
        )
        with patch_databases({"SurveyHub": lambda: Real("SurveyHub", config=config)}):
            yield hub
        hub.dispose()
    finally:
        import dbflow

        dbflow.dispose_all()
        drop_test_database(admin, name)
        admin.dispose()
