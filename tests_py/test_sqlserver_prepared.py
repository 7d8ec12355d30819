"""SQL Server statements prepared per connection: a repeated statement runs
by its handle (`sp_execute`), the first run prepares it (`sp_prepexec`).
Runs whenever DBFLOW_TEST_MSSQL_URL is set; skipped with that reason otherwise."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import dbflow


@pytest.fixture
def one(env, mssql_test_url: str) -> Iterator[dbflow.DatabaseManager]:  # type: ignore[no-untyped-def]
    """A manager with one connection, so every statement meets the handles
    its earlier runs left."""
    name = env.database(url=mssql_test_url, pool_size=1, max_overflow=0, pool_release_grace=0)
    manager = env.manager(name)
    yield manager
    manager.dispose()


def prepared(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage().startswith("statement prepared") for r in caplog.records)


def test_a_repeated_statement_is_prepared_once(
    one: dbflow.DatabaseManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbflow")
    for i in range(5):
        assert one.execute_query("SELECT :i + 1 AS n", {"i": i}) == [{"n": i + 1}]
    assert prepared(caplog) == 1
    # Other value types are other declarations: a statement of their own.
    assert one.execute_query("SELECT :i + 1 AS n", {"i": 2.5}) == [{"n": 3.5}]
    assert prepared(caplog) == 2
    assert one.get_pool_status()["connections_opened"] == 1


def test_values_declared_differently_never_share_a_handle(one: dbflow.DatabaseManager) -> None:
    """A handle prepared for nvarchar(4000) must not take a longer text
    (it would be cut), nor an int a text."""
    sql = "SELECT :v AS v"
    for value in ["short", "x" * 5000, None, 7, "short again", "é" * 4001, b"\x00" * 9000]:
        assert one.execute_query(sql, {"v": value}) == [{"v": value}]


def test_a_statement_follows_a_table_that_changed_shape(one: dbflow.DatabaseManager) -> None:
    one.execute_query("DROP TABLE IF EXISTS prep_shape")
    one.execute_query("CREATE TABLE prep_shape (id int PRIMARY KEY, a nvarchar(10))")
    one.execute_query("INSERT INTO prep_shape VALUES (1, 'one')")
    sql = "SELECT * FROM prep_shape WHERE id = :id"
    try:
        assert one.execute_query(sql, {"id": 1}) == [{"id": 1, "a": "one"}]
        one.execute_query("DROP TABLE prep_shape")
        one.execute_query("CREATE TABLE prep_shape (id int PRIMARY KEY, b int, c bit)")
        one.execute_query("INSERT INTO prep_shape VALUES (1, 7, 1)")
        assert one.execute_query(sql, {"id": 1}) == [{"id": 1, "b": 7, "c": True}]
        with one.transaction() as tx:
            assert tx.execute_query(sql, {"id": 1}) == [{"id": 1, "b": 7, "c": True}]
    finally:
        one.execute_query("DROP TABLE IF EXISTS prep_shape")


def test_a_prepared_statement_that_fails_leaves_the_connection_in_step(
    one: dbflow.DatabaseManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbflow")
    one.execute_query("DROP TABLE IF EXISTS prep_fail")
    one.execute_query("CREATE TABLE prep_fail (id int PRIMARY KEY)")
    insert = "INSERT INTO prep_fail (id) VALUES (:id)"
    try:
        one.execute_query(insert, {"id": 1})
        for _ in range(3):  # by its handle, refused by the server each time
            with pytest.raises(dbflow.IntegrityError):
                one.execute_query(insert, {"id": 1})
        # A statement whose first run fails (SQL Server still returns the
        # handle it prepared, after the error: kept to unprepare; Babelfish
        # returns none): the connection stays in step.
        for i in range(3):
            with pytest.raises(dbflow.IntegrityError):
                one.execute_query(f"INSERT INTO prep_fail (id) VALUES (:id) -- {i}", {"id": 1})
            assert one.execute_query("SELECT COUNT(*) AS n FROM prep_fail") == [{"n": 1}]
        one.execute_query(insert, {"id": 2})
        assert one.execute_query("SELECT id FROM prep_fail ORDER BY id") == [{"id": 1}, {"id": 2}]
        assert one.get_pool_status()["connections_opened"] == 1
    finally:
        one.execute_query("DROP TABLE IF EXISTS prep_fail")


def test_more_statements_than_stay_prepared(
    one: dbflow.DatabaseManager, caplog: pytest.LogCaptureFixture
) -> None:
    """Past 256 statements the least recently used are unprepared; every
    statement still answers, and an evicted one is prepared again."""
    caplog.set_level(logging.DEBUG, logger="dbflow")
    for round_ in range(2):
        for i in range(300):
            got = one.execute_query(f"SELECT :i AS i, {i} AS k", {"i": round_})
            assert got == [{"i": round_, "k": i}]
    assert prepared(caplog) == 600, "each round re-prepares what the last evicted"
    assert any("unprepared" in r.getMessage() for r in caplog.records)
    assert one.get_pool_status()["connections_opened"] == 1


def test_execute_many_prepares_its_chunk_once(
    one: dbflow.DatabaseManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbflow")
    one.execute_query("DROP TABLE IF EXISTS prep_many")
    one.execute_query("CREATE TABLE prep_many (id int PRIMARY KEY, label nvarchar(20))")
    try:
        rows = [{"id": i, "label": f"row {i}"} for i in range(1000)]
        assert (
            one.execute_many("INSERT INTO prep_many (id, label) VALUES (:id, :label)", rows) == 1000
        )
        got = one.execute_query("SELECT COUNT(*) AS n, SUM(id) AS ids FROM prep_many")
        assert got == [{"n": 1000, "ids": sum(range(1000))}]
        # Full chunks share one statement; the last, shorter one has its own
        # (SQL Server takes the 1000 rows in one statement: one).
        assert prepared(caplog) in (1, 2)
    finally:
        one.execute_query("DROP TABLE IF EXISTS prep_many")


def test_prepared_statements_can_be_turned_off(
    env, mssql_test_url: str, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="dbflow")
    name = env.database(url=mssql_test_url, prepared_statements="false", pool_release_grace=0)
    manager = env.manager(name)
    try:
        for i in range(3):
            assert manager.execute_query("SELECT :i AS i", {"i": i}) == [{"i": i}]
        assert prepared(caplog) == 0
    finally:
        manager.dispose()
