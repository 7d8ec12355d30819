"""Test doubles and helpers for flows that use dbflow.

    from dbflow.testing import MockDatabaseManager, patch_databases
    mock = MockDatabaseManager("SurveyHub")
    mock.add_result("SELECT * FROM survey_responses", [{"survey_id": 1}])
    with patch_databases({"SurveyHub": mock}):
        run_my_flow()
    mock.assert_called_with_sql("SELECT * FROM survey_responses")

``pytest`` picks up the fixtures ``dbflow_mock`` and ``dbflow_database``
automatically once dbflow is installed (see :mod:`dbflow.testing.plugin`).
"""

from __future__ import annotations

from dbflow.testing.guard import (
    NotATestDatabaseError,
    create_test_database,
    drop_test_database,
    ensure_test_database,
    truncate_tables,
)
from dbflow.testing.mock import (
    ANY,
    AsyncMockDatabaseManager,
    Call,
    MockDatabaseManager,
    MockTransaction,
    UnscriptedQueryError,
)
from dbflow.testing.patch import patch_databases

__all__ = [
    "ANY",
    "AsyncMockDatabaseManager",
    "Call",
    "MockDatabaseManager",
    "MockTransaction",
    "NotATestDatabaseError",
    "UnscriptedQueryError",
    "create_test_database",
    "drop_test_database",
    "ensure_test_database",
    "patch_databases",
    "truncate_tables",
]
