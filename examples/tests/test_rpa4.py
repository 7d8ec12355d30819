"""Testing the rpa4 (Arrow) flow: with mocks answering its Arrow reads from
scripted rows, and against a real migrated rpa_db with a real SurveyHub —
PostgreSQL always, SQL Server too when DBFLOW_TEST_MSSQL_URL is set — where
the copy is checked value by value against the source."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from common import score
from rpa4.flow import COPY_SOURCE, rpa4_workflow, score_responses

from dbflow.testing import MockDatabaseManager, patch_databases

UTC = dt.timezone.utc
COLUMNS = ["survey_id", "customer_id", "response_data", "submitted_at", "processed"]


def answers(*ratings: int) -> str:
    return json.dumps({f"question_{q}": r for q, r in enumerate(ratings, start=1)})


def at(day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2025, 3, day, hour, 15, 30, 250000, tzinfo=UTC)


SOURCE: list[dict[str, Any]] = [
    {"survey_id": 1, "customer_id": 7, "response_data": answers(5, 5, 4, 4, 5),
     "submitted_at": at(1), "processed": 0},
    {"survey_id": 2, "customer_id": 7, "response_data": answers(3, 3, 3, 3, 3),
     "submitted_at": at(3), "processed": 0},
    {"survey_id": 3, "customer_id": 7, "response_data": "not json",
     "submitted_at": at(4), "processed": 0},
    {"survey_id": 4, "customer_id": 8, "response_data": answers(1, 2),  # 3 missing: 1+2+3+3+3
     "submitted_at": at(2), "processed": 0},
    {"survey_id": 5, "customer_id": 8, "response_data": answers(5, 5, 5, 5, 5),
     "submitted_at": at(5), "processed": 1},  # processed: copied, not scored
    {"survey_id": 6, "customer_id": 9, "response_data": "[1, 2]",
     "submitted_at": at(6), "processed": 0},
]  # fmt: skip

COPY_SCHEMA = pa.schema(
    [
        ("survey_id", pa.int32()),
        ("customer_id", pa.int32()),
        ("response_data", pa.string()),
        ("submitted_at", pa.timestamp("us", tz="UTC")),
        ("processed", pa.int32()),
    ]
)
# What the unprocessed-responses query reads: every column but processed.
READ_SCHEMA = pa.schema([f for f in COPY_SCHEMA if f.name != "processed"])


def unprocessed(sql: str, params: Any) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row.items() if k != "processed"}
        for row in SOURCE
        if row["processed"] == params["processed"]
    ]


def mock_survey_hub() -> MockDatabaseManager:
    hub = MockDatabaseManager("SurveyHub", database_type="sqlserver", strict=True)
    hub.add_result(lambda sql, p: "WHERE processed" in sql, unprocessed, arrow_schema=READ_SCHEMA)
    hub.add_result(COPY_SOURCE, SOURCE, arrow_schema=COPY_SCHEMA)
    return hub


def test_rpa4_with_mocks() -> None:
    hub, rpa = mock_survey_hub(), MockDatabaseManager("rpa_db")
    rpa.migrations.pending = ["V001", "V002", "V003", "V004"]
    with patch_databases({"SurveyHub": hub, "rpa_db": rpa}):
        result = rpa4_workflow(batch_rows=2)
    assert [c.method for c in hub.calls] == ["iter_arrow", "fetch_polars"]
    assert result == {
        "rows_copied": 6,
        "batch_rows": 2,
        "responses_found": 5,
        "responses_scored": 3,
        "failed": 2,
        "customers_scored": 3,
        "average_score": 3.33,  # (4.6 + 3.0 + 2.4) / 3
        "schema_version": "V004",
    }
    # Each table is emptied before it is loaded (the flow reruns cleanly).
    writes = [(c.method, c.sql) for c in rpa.calls if c.method != "run_migrations"]
    assert writes == [
        ("execute_query", "DELETE FROM survey_responses_copy"),
        ("bulk_insert", "bulk_insert survey_responses_copy"),
        ("execute_query", "DELETE FROM rpa4_customer_scores"),
        ("bulk_insert", "bulk_insert rpa4_customer_scores"),
    ]
    # The copy is the source, every column, through three Arrow batches.
    (copy,) = rpa.queries_matching("bulk_insert survey_responses_copy")
    assert copy.params == SOURCE
    (scores,) = rpa.queries_matching("bulk_insert rpa4_customer_scores")
    assert scores.params == [
        {"customer_id": 7, "responses": 3, "scored": 2, "average_score": 3.8,
         "last_submitted_at": at(4)},
        {"customer_id": 8, "responses": 1, "scored": 1, "average_score": 2.4,
         "last_submitted_at": at(2)},
        {"customer_id": 9, "responses": 1, "scored": 0, "average_score": None,
         "last_submitted_at": at(6)},
    ]  # fmt: skip


def test_rpa4_with_nothing_unprocessed() -> None:
    hub = MockDatabaseManager("SurveyHub", strict=True)
    hub.add_result(lambda sql, p: "WHERE processed" in sql, [], arrow_schema=READ_SCHEMA)
    hub.add_result(COPY_SOURCE, SOURCE[:1], arrow_schema=COPY_SCHEMA)
    rpa = MockDatabaseManager("rpa_db")
    with patch_databases({"SurveyHub": hub, "rpa_db": rpa}):
        result = rpa4_workflow()
    assert result["rows_copied"] == 1 and result["customers_scored"] == 0
    assert result["responses_found"] == 0 and result["average_score"] is None
    assert rpa.queries_matching("bulk_insert rpa4_customer_scores") == []
    # Scores of an earlier run are removed all the same.
    assert rpa.queries_matching("DELETE FROM rpa4_customer_scores")


def test_polars_scoring_matches_common_py() -> None:
    """score_responses (Polars expressions) gives what common.score gives,
    response by response: the score, or null where common.score fails."""
    import polars as pl

    texts = [answers(*(1 + (i * q) % 5 for q in range(1, 1 + i % 6))) for i in range(60)]
    texts += [
        "not json", "", "[1, 2]", "5", '"{x}"', "{}", ' {"question_1": 2}', '{"a": 1} x',
        '{"question_1": "4"}', '{"question_1": 4.0, "question_5": 1.5}',
        '{"question_2": "abc"}', '{"question_3": [1]}', '{"question_4": 5, "note": {"x": 1}}',
    ]  # fmt: skip
    frame = pl.DataFrame({"response_data": texts})
    got = score_responses(frame)["satisfaction_score"].to_list()
    want = [score({"survey_id": 0, "customer_id": 0, "response_data": t}, "t") for t in texts]
    assert got == [w["satisfaction_score"] for w in want]
    assert got.count(None) == 8


# Rows beyond the survey_hub fixture's 120 (whose submitted_at all default to
# about now): the edges of what a copy must keep exactly.
EDGES: list[dict[str, Any]] = [
    {"survey_id": 1001, "customer_id": 900, "response_data": answers(5, 1),
     "submitted_at": dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), "processed": 0},
    {"survey_id": 1002, "customer_id": 900,
     "response_data": '{"comment": "très bien — 满意 👍", "question_1": 4}',
     "submitted_at": dt.datetime(1999, 12, 31, 23, 0, 0, 1,
                                 tzinfo=dt.timezone(dt.timedelta(hours=-5))), "processed": 1},
    {"survey_id": 1003, "customer_id": 901, "response_data": "it's \"quoted\"\n\ta tab",
     "submitted_at": dt.datetime(2030, 6, 15, 12, 30, 45, 123456,
                                 tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
     "processed": 0},
    {"survey_id": 1004, "customer_id": 901, "response_data": answers(2, 2, 2, 2, 3),
     "submitted_at": dt.datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC), "processed": 0},
    {"survey_id": 2_147_483_647, "customer_id": -2_147_483_648, "response_data": "",
     "submitted_at": dt.datetime(2001, 1, 1, tzinfo=UTC), "processed": 0},
]  # fmt: skip


def copied_rows(db: Any) -> list[dict[str, Any]]:
    return list(
        db.execute_query(
            f"SELECT {', '.join(COLUMNS)} FROM survey_responses_copy ORDER BY survey_id"
        )
    )


def assert_exact_copy(copy: list[dict[str, Any]], source: list[dict[str, Any]]) -> None:
    """Row by row, column by column: the same values of the same types (a
    timestamp the same instant to the microsecond, whatever offset the
    source reports it in)."""
    assert [r["survey_id"] for r in copy] == [r["survey_id"] for r in source]
    for got, want in zip(copy, source, strict=True):
        assert list(got) == COLUMNS
        for column in COLUMNS:
            g, w = got[column], want[column]
            where = f"survey {want['survey_id']}, {column}"
            assert type(g) is type(w), f"{where}: {type(g).__name__} != {type(w).__name__}"
            assert g == w, f"{where}: {g!r} != {w!r}"
            if isinstance(w, dt.datetime):
                assert w.utcoffset() is not None and g.utcoffset() is not None, where


def expected_scores(source: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per customer, from the unprocessed source rows, scored by common.py."""
    by_customer: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in source:
        if row["processed"] == 0:
            by_customer[row["customer_id"]].append(row)
    expected = {}
    for customer, rows in by_customer.items():
        values = [score(r, "test")["satisfaction_score"] for r in rows]
        valid = [Decimal(str(v)) for v in values if v is not None]
        expected[customer] = {
            "responses": len(rows),
            "scored": len(valid),
            "mean": sum(valid) / len(valid) if valid else None,
            "last_submitted_at": max(r["submitted_at"] for r in rows),
        }
    return expected


def assert_scores(db: Any, source: list[dict[str, Any]]) -> None:
    rows = db.execute_query(
        "SELECT customer_id, responses, scored, average_score, last_submitted_at, scored_at "
        "FROM rpa4_customer_scores ORDER BY customer_id"
    )
    expected = expected_scores(source)
    assert [r["customer_id"] for r in rows] == sorted(expected)
    for row in rows:
        want = expected[row["customer_id"]]
        assert row["responses"] == want["responses"] and row["scored"] == want["scored"]
        assert row["last_submitted_at"] == want["last_submitted_at"]
        assert row["scored_at"] is not None  # the table's default
        if want["mean"] is None:
            assert row["average_score"] is None
        else:
            # numeric(4, 2): the mean rounded to 2 places.
            assert isinstance(row["average_score"], Decimal)
            assert abs(row["average_score"] - want["mean"]) <= Decimal("0.005"), row


@pytest.mark.dbflow_database("rpa_db", migrations_dir="migrations")
def test_rpa4_copies_exactly_and_scores(dbflow_database, survey_hub) -> None:  # type: ignore[no-untyped-def]
    """SurveyHub on PostgreSQL, and on SQL Server (Babelfish over TDS) when
    DBFLOW_TEST_MSSQL_URL is set: SQL Server → PostgreSQL through Arrow."""
    survey_hub.execute_many(
        f"INSERT INTO survey_responses ({', '.join(COLUMNS)}) "
        "VALUES (:survey_id, :customer_id, :response_data, :submitted_at, :processed)",
        EDGES,
    )
    source = survey_hub.execute_query(COPY_SOURCE)
    assert len(source) == 125

    result = rpa4_workflow(batch_rows=16)  # 8 Arrow batches
    assert result["schema_version"] == "V004"
    assert result["rows_copied"] == 125
    assert_exact_copy(copied_rows(dbflow_database), source)
    # The source's own values, not only the round trip: the edge rows as written.
    by_id = {r["survey_id"]: r for r in copied_rows(dbflow_database)}
    for edge in EDGES:
        assert by_id[edge["survey_id"]] == edge
    (defaulted,) = dbflow_database.execute_query(
        "SELECT count(*) AS n FROM survey_responses_copy WHERE copied_at IS NOT NULL"
    )
    assert defaulted["n"] == 125

    # 120 fixture rows (12 not JSON) + 4 unprocessed edges (2 not JSON objects).
    assert result["responses_found"] == 124 and result["failed"] == 14
    assert result["responses_scored"] == 110
    assert result["customers_scored"] == len(expected_scores(source)) == 7 + 3
    assert_scores(dbflow_database, source)

    # A rerun replaces rather than duplicates (or fails on the primary keys).
    again = rpa4_workflow()
    assert again["rows_copied"] == 125 and again["customers_scored"] == 10
    assert_exact_copy(copied_rows(dbflow_database), source)
    assert_scores(dbflow_database, source)
