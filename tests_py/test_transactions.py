"""Autocommit, execute_many, execute_transaction and transaction()."""

from __future__ import annotations

import pytest

import dbflow
from dbflow import IntegrityError, QueryError, TransactionError


def count(db: dbflow.DatabaseManager, table: str) -> int:
    return int(db.execute_query(f"SELECT count(*) AS n FROM {table}")[0]["n"])


def test_each_call_commits(db: dbflow.DatabaseManager, env, table: str) -> None:  # type: ignore[no-untyped-def]
    db.execute_query(f"CREATE TABLE {table} (a int)")
    db.execute_query(f"INSERT INTO {table} VALUES (1)")
    other = env.manager(env.database())
    try:
        assert count(other, table) == 1
    finally:
        other.dispose()


def test_dml_returning_rows(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (id serial PRIMARY KEY, a int)")
    rows = db.execute_query(
        f"INSERT INTO {table} (a) VALUES (:a), (:b) RETURNING id, a", {"a": 5, "b": 6}
    )
    assert rows == [{"id": 1, "a": 5}, {"id": 2, "a": 6}]


def test_execute_many_counts_and_is_atomic(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    n = db.execute_many(
        f"INSERT INTO {table} VALUES (:id, :name)", [{"id": i, "name": f"n{i}"} for i in range(100)]
    )
    assert n == 100
    with pytest.raises(IntegrityError) as info:
        db.execute_many(
            f"INSERT INTO {table} VALUES (:id, :name)",
            [{"id": 1000, "name": "x"}, {"id": 5, "name": "dup"}],
        )
    assert info.value.sqlstate == "23505"
    assert count(db, table) == 100
    assert db.execute_many(f"INSERT INTO {table} VALUES (:id, :name)", []) == 0


def test_execute_transaction_all_or_nothing(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    results = db.execute_transaction(
        [
            (f"INSERT INTO {table} VALUES (:id)", {"id": 1}),
            (f"INSERT INTO {table} VALUES (:id) RETURNING id", {"id": 2}),
            f"SELECT count(*) AS n FROM {table}",
        ]
    )
    assert results == [[], [{"id": 2}], [{"n": 2}]]
    with pytest.raises(IntegrityError) as info:
        db.execute_transaction(
            [
                (f"INSERT INTO {table} VALUES (:id)", {"id": 3}),
                (f"INSERT INTO {table} VALUES (:id)", {"id": 1}),
            ]
        )
    assert "statement 2 of 2" in str(info.value)
    assert count(db, table) == 2


def test_transaction_commits_on_success(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (a int)")
    with db.transaction() as tx:
        tx.execute_query(f"INSERT INTO {table} VALUES (:a)", {"a": 1})
        assert tx.execute_many(f"INSERT INTO {table} VALUES (:a)", [{"a": 2}, {"a": 3}]) == 2
        assert tx.execute_query(f"SELECT count(*) AS n FROM {table}") == [{"n": 3}]
        assert tx.active
    assert not tx.active
    assert count(db, table) == 3


def test_user_exception_rolls_back_and_propagates_unchanged(
    db: dbflow.DatabaseManager, table: str
) -> None:
    db.execute_query(f"CREATE TABLE {table} (a int)")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with db.transaction() as tx:
            tx.execute_query(f"INSERT INTO {table} VALUES (1)")
            raise Boom
    assert count(db, table) == 0
    assert db.get_pool_status()["checked_out"] == 0


def test_failing_statement_rolls_back_everything(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (a int NOT NULL)")
    with pytest.raises(IntegrityError):
        with db.transaction() as tx:
            tx.execute_query(f"INSERT INTO {table} VALUES (1)")
            tx.execute_query(f"INSERT INTO {table} VALUES (NULL)")
    assert count(db, table) == 0


def test_failing_commit_is_a_transaction_error(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table}_p (id int PRIMARY KEY)")
    db.execute_query(
        f"CREATE TABLE {table} (p int REFERENCES {table}_p (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    try:
        with pytest.raises(TransactionError) as info:
            with db.transaction() as tx:
                tx.execute_query(f"INSERT INTO {table} VALUES (42)")  # checked at COMMIT
        assert "COMMIT failed" in str(info.value)
        assert info.value.sqlstate == "23503"
        assert count(db, table) == 0
    finally:
        db.execute_query(f"DROP TABLE IF EXISTS {table}, {table}_p")


def test_savepoint_rolls_back_alone(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (a int PRIMARY KEY)")
    with db.transaction() as tx:
        tx.execute_query(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(IntegrityError):
            with tx.savepoint():
                tx.execute_query(f"INSERT INTO {table} VALUES (2)")
                tx.execute_query(f"INSERT INTO {table} VALUES (1)")
        with tx.savepoint():
            tx.execute_query(f"INSERT INTO {table} VALUES (3)")
    assert db.execute_query(f"SELECT a FROM {table} ORDER BY a") == [{"a": 1}, {"a": 3}]


def test_using_a_finished_transaction_is_an_error(db: dbflow.DatabaseManager) -> None:
    with db.transaction() as tx:
        pass
    with pytest.raises(TransactionError, match="not open"):
        tx.execute_query("SELECT 1")


def test_explicit_commit_and_rollback(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (a int)")
    with db.transaction() as tx:
        tx.execute_query(f"INSERT INTO {table} VALUES (1)")
        tx.rollback()
    assert count(db, table) == 0
    with db.transaction() as tx:
        tx.execute_query(f"INSERT INTO {table} VALUES (1)")
        tx.commit()
    assert count(db, table) == 1


def test_query_error_carries_sqlstate(db: dbflow.DatabaseManager) -> None:
    with pytest.raises(QueryError) as info:
        db.execute_query("SELECT * FROM no_such_table_here")
    assert info.value.sqlstate == "42P01"
    assert info.value.operation == "execute_query"
    assert f"[{db.database_name}]" in str(info.value)
    # The connection is still good afterwards.
    assert db.execute_query("SELECT 1 AS x") == [{"x": 1}]


def test_execute_many_in_chunks_with_mixed_values(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY, note text, n numeric)")
    rows = [
        {"id": i, "note": None if i % 3 else f"n{i}", "n": None if i % 5 else i / 2}
        for i in range(2500)
    ]
    assert (
        db.execute_many(f"INSERT INTO {table} (id, note, n) VALUES (:id, :note, :n)", rows) == 2500
    )
    assert db.execute_query(
        f"SELECT count(*) AS c, count(note) AS notes, count(n) AS ns FROM {table}"
    ) == [{"c": 2500, "notes": 834, "ns": 500}]
    dupes = [{"id": i % 10, "note": "x", "n": 1} for i in range(30)]
    inserted = db.execute_many(
        f"INSERT INTO {table} (id, note, n) VALUES (:id, :note, :n) ON CONFLICT (id) DO NOTHING",
        dupes,
    )
    assert inserted == 0
    upserts = [{"id": 1, "note": "first", "n": 1}, {"id": 1, "note": "second", "n": 2}]
    db.execute_many(
        f"INSERT INTO {table} (id, note, n) VALUES (:id, :note, :n) "
        "ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note",
        upserts,
    )
    assert db.execute_query(f"SELECT note FROM {table} WHERE id = 1") == [{"note": "second"}]
