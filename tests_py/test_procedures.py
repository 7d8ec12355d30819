"""Stored procedures, every result set and the server's messages, on the
real servers: SQL Server (Babelfish or Microsoft's, when
DBFLOW_TEST_MSSQL_URL is set) and PostgreSQL (direct and through
PgBouncer). Table-valued parameters are in test_table_values.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import dbflow
from dbflow import MultipleResultSetsError, ParameterError, ProcedureResult, QueryError

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


@pytest.fixture
def proc(bdb: dbflow.DatabaseManager, backend: Any) -> Iterator[Any]:
    """Create procedures (and functions) for a test; dropped afterwards."""
    made: list[tuple[str, str]] = []

    def create(kind: str, name: str, ddl: str) -> str:
        bdb.execute_query(ddl)
        made.append((kind, name))
        return name

    yield create
    for kind, name in reversed(made):
        bdb.execute_query(f"DROP {kind} IF EXISTS {name}")


def dbflow_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dbflow"]


# ---- SQL Server --------------------------------------------------------------

IMPORT_SURVEY = """CREATE PROCEDURE {name}
    @batch int, @label nvarchar(20), @total int OUTPUT, @note nvarchar(200) OUTPUT,
    @amount decimal(12, 2) OUTPUT, @at datetime2(6) OUTPUT
AS
BEGIN
    PRINT 'importing batch ' + CAST(@batch AS nvarchar(10));
    SELECT @batch AS batch, @label AS label;
    SELECT n FROM (VALUES (1), (2), (3)) AS t(n) ORDER BY n;
    SET @total = ISNULL(@total, 0) + @batch;
    SET @note = N'batch ' + @label + N' done';
    SET @amount = 1234.5;
    SET @at = '2024-01-02T03:04:05.123456';
    RAISERROR('progress %d of %d', 0, 1, 3, 3);
    RETURN 7;
END"""


@pytest.mark.backends("sqlserver")
def test_a_procedure_gives_result_sets_outputs_return_code_rowcounts_and_messages(
    bdb: dbflow.DatabaseManager, proc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("usp_import")
    proc("PROCEDURE", name, IMPORT_SURVEY.format(name=name))
    caplog.set_level(logging.INFO, logger="dbflow")
    result = bdb.call_procedure(
        name,
        {"batch": 5, "label": "north", "total": 100},
        output={
            "total": "int",
            "note": "nvarchar(200)",
            "amount": "decimal(12, 2)",
            "at": "datetime2(6)",
        },
    )
    assert isinstance(result, ProcedureResult)
    assert result.result_sets == [[{"batch": 5, "label": "north"}], [{"n": 1}, {"n": 2}, {"n": 3}]]
    assert result.output == {
        "total": 105,  # INPUT OUTPUT: 100 went in
        "note": "batch north done",
        "amount": Decimal("1234.50"),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
    }
    assert result.return_value == 7
    assert result.messages == ["importing batch 5", "progress 3 of 3"]
    # The SELECTs' counts, in order (Babelfish also counts each SET as 0).
    assert [n for n in result.rowcounts if n] == [1, 3]
    logged = dbflow_lines(caplog)
    db_name = bdb.database_name
    assert logged.count(f"[{db_name}] importing batch 5") == 1
    assert logged.count(f"[{db_name}] progress 3 of 3") == 1


@pytest.mark.backends("sqlserver")
def test_outputs_set_before_an_error_travel_with_it(bdb: dbflow.DatabaseManager, proc: Any) -> None:
    name = unique("usp_fails")
    proc(
        "PROCEDURE",
        name,
        f"""CREATE PROCEDURE {name} @total int OUTPUT AS
BEGIN
    PRINT 'started';
    SET @total = 41;
    SELECT 1 AS step;
    RAISERROR('the import failed', 16, 1);
    SET @total = 42;
    RETURN 3;
END""",
    )
    with pytest.raises(QueryError) as caught:
        bdb.call_procedure(name, output={"total": "int"})
    e = caught.value
    assert "the import failed" in str(e) and e.error_number == 50000
    assert e.messages == ["started"]
    # RAISERROR does not end the procedure: it ran to its RETURN.
    assert e.result == ProcedureResult(
        result_sets=[[{"step": 1}]],
        output={"total": 42},
        return_value=3,
        rowcounts=e.result.rowcounts,
        messages=["started"],
    )
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]


@pytest.mark.backends("sqlserver")
def test_names_are_quoted_and_a_missing_procedure_is_the_servers_error(
    bdb: dbflow.DatabaseManager, proc: Any
) -> None:
    name = unique("usp odd")
    proc(
        "PROCEDURE",
        f"[dbo].[{name}]",
        f"CREATE PROCEDURE [dbo].[{name}] @x int AS BEGIN SELECT @x * 2 AS doubled; END",
    )
    for written in (f"[dbo].[{name}]", f'"dbo"."{name}"', f"dbo.[{name}]"):
        assert bdb.call_procedure(written, {"x": 21}).result_sets == [[{"doubled": 42}]]
    with pytest.raises(QueryError) as missing:
        bdb.call_procedure("dbo.no_such_procedure_here", {"x": 1})
    assert "no_such_procedure_here" in str(missing.value)
    assert missing.value.operation == "call_procedure"
    for hostile in ("dbo.p; DROP TABLE x", "p--", "[unclosed", "p'"):
        with pytest.raises(ParameterError, match="is not a procedure name"):
            bdb.call_procedure(hostile)
    with pytest.raises(ParameterError, match="not a SQL type name"):
        bdb.call_procedure(f"[dbo].[{name}]", {"x": 1}, output={"y": "int; DROP TABLE x"})
    with pytest.raises(ParameterError, match="without @"):
        bdb.call_procedure(f"[dbo].[{name}]", {"@x": 1})


@pytest.mark.backends("sqlserver")
def test_a_chatty_procedure_logs_a_bounded_number_of_lines_and_keeps_every_message(
    bdb: dbflow.DatabaseManager, proc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("usp_chatty")
    proc(
        "PROCEDURE",
        name,
        f"""CREATE PROCEDURE {name} @n int AS
BEGIN
    DECLARE @i int = 0;
    WHILE @i < @n
    BEGIN
        SET @i = @i + 1;
        PRINT 'line ' + CAST(@i AS nvarchar(10));
    END
    SELECT @i AS printed;
END""",
    )
    caplog.set_level(logging.INFO, logger="dbflow")
    result = bdb.call_procedure(name, {"n": 10_000})
    assert result.result_sets == [[{"printed": 10_000}]]
    assert len(result.messages) == 10_000
    assert result.messages[0] == "line 1" and result.messages[-1] == "line 10000"
    lines = [line for line in dbflow_lines(caplog) if line.startswith(f"[{bdb.database_name}]")]
    assert len(lines) == 51
    assert lines[49] == f"[{bdb.database_name}] line 50"
    assert "9950 more server messages not logged" in lines[50]


@pytest.mark.backends("sqlserver")
def test_a_batch_with_three_result_sets(
    bdb: dbflow.DatabaseManager, btable: str, backend: Any
) -> None:
    bdb.execute_query(f"CREATE TABLE {btable} (id int)")
    batch = (
        "SET NOCOUNT OFF; "
        f"INSERT INTO {btable} VALUES (1), (2); "
        "PRINT 'between'; "
        f"SELECT id FROM {btable} ORDER BY id; "
        "SELECT 'b' AS second; "
        f"UPDATE {btable} SET id = id + 10; "
        "SELECT 3 AS third WHERE 1 = 0"
    )
    bdb.execute_query("SELECT 1 AS warm")
    before = bdb.get_pool_status()
    with pytest.raises(MultipleResultSetsError) as caught:
        bdb.execute_query(batch)
    e = caught.value
    assert e.result_sets == 3
    assert "3 result sets" in str(e)
    assert "execute_query_sets" in str(e) and "call_procedure" in str(e)
    assert e.messages == ["between"]
    assert isinstance(e, QueryError) and e.may_have_run
    # The wire was drained before the error: the same connection is back in
    # the pool and answers.
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
    after = bdb.get_pool_status()
    assert after["checked_out"] == 0 and after["checked_in"] == before["checked_in"]
    assert after["connections_opened"] == before["connections_opened"]
    assert after["connections_closed"] == before["connections_closed"]
    # Rowcount-only statements are not result sets; an empty one is.
    bdb.execute_query(f"DELETE FROM {btable}")
    sets = bdb.execute_query_sets(batch)
    assert sets == [[{"id": 1}, {"id": 2}], [{"second": "b"}], []]
    with pytest.raises(MultipleResultSetsError):
        list(bdb.iter_query("SELECT 1 AS a; SELECT 2 AS b"))
    with pytest.raises(MultipleResultSetsError):
        bdb.execute_query_with_timeout("SELECT 1 AS a; SELECT 2 AS b", timeout=5)
    pytest.importorskip("pyarrow")
    with pytest.raises(MultipleResultSetsError):
        bdb.fetch_arrow("SELECT 1 AS a; SELECT 2 AS b")
    assert bdb.execute_query_sets("SELECT :v AS v; SELECT :v + 1 AS w", {"v": 1}) == [
        [{"v": 1}],
        [{"w": 2}],
    ]


@pytest.mark.backends("sqlserver")
def test_exec_of_a_procedure_through_execute_query_sets(
    bdb: dbflow.DatabaseManager, proc: Any
) -> None:
    name = unique("usp_two")
    proc(
        "PROCEDURE",
        name,
        f"CREATE PROCEDURE {name} AS BEGIN SELECT 1 AS a; SELECT 2 AS b; END",
    )
    assert bdb.execute_query_sets(f"EXEC {name}") == [[{"a": 1}], [{"b": 2}]]
    with pytest.raises(MultipleResultSetsError):
        bdb.execute_query(f"EXEC {name}")


@pytest.mark.backends("sqlserver")
def test_calls_in_a_rolled_back_transaction_leave_nothing(
    bdb: dbflow.DatabaseManager, proc: Any, btable: str
) -> None:
    bdb.execute_query(f"CREATE TABLE {btable} (id int)")
    name = unique("usp_insert")
    proc(
        "PROCEDURE",
        name,
        f"""CREATE PROCEDURE {name} @id int, @count int OUTPUT AS
BEGIN
    INSERT INTO {btable} VALUES (@id);
    SELECT @count = COUNT(*) FROM {btable};
    SELECT id FROM {btable} ORDER BY id;
END""",
    )

    class Undo(Exception):
        pass

    with pytest.raises(Undo):
        with bdb.transaction() as tx:
            first = tx.call_procedure(name, {"id": 1}, output={"count": "int"})
            second = tx.call_procedure(name, {"id": 2}, output={"count": "int"})
            assert (first.output, second.output) == ({"count": 1}, {"count": 2})
            assert tx.execute_query_sets(f"SELECT COUNT(*) AS n FROM {btable}") == [[{"n": 2}]]
            raise Undo
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable}") == [{"n": 0}]


# ---- PostgreSQL --------------------------------------------------------------


@pytest.mark.backends("postgresql", "pgbouncer")
def test_postgres_procedure_with_inout_and_out_parameters(
    bdb: dbflow.DatabaseManager, proc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("close_month")
    proc(
        "PROCEDURE",
        name,
        f"""CREATE PROCEDURE {name}(month int, INOUT total numeric, OUT note text)
LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'closing month %', month;
    RAISE WARNING 'month % had late entries', month;
    total := total + month * 1.5;
    note := 'closed ' || month;
END $$""",
    )
    caplog.set_level(logging.INFO, logger="dbflow")
    result = bdb.call_procedure(
        name, {"month": 3, "total": Decimal("10.25")}, output={"total": "numeric", "note": "text"}
    )
    assert result == ProcedureResult(
        output={"total": Decimal("14.75"), "note": "closed 3"},
        messages=["closing month 3", "month 3 had late entries"],
    )
    records = [r for r in caplog.records if r.name == "dbflow" and "month 3" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, f"[{bdb.database_name}] closing month 3"),
        (logging.WARNING, f"[{bdb.database_name}] month 3 had late entries"),
    ]
    # Schema-qualified and quoted names resolve as PostgreSQL folds them.
    assert bdb.call_procedure(
        f'public."{name}"', {"month": 1, "total": 0}, output={"total": "numeric", "note": "text"}
    ).output == {"total": Decimal("1.5"), "note": "closed 1"}


@pytest.mark.backends("postgresql", "pgbouncer")
def test_postgres_functions_are_read_with_execute_query(
    bdb: dbflow.DatabaseManager, proc: Any
) -> None:
    name = unique("recent_orders")
    proc(
        "FUNCTION",
        name,
        f"""CREATE FUNCTION {name}(n int) RETURNS TABLE (id int, label text)
LANGUAGE sql AS $$ SELECT g, 'order ' || g FROM generate_series(1, n) AS g $$""",
    )
    assert bdb.execute_query(f"SELECT * FROM {name}(:n)", {"n": 2}) == [
        {"id": 1, "label": "order 1"},
        {"id": 2, "label": "order 2"},
    ]
    with pytest.raises(QueryError) as caught:
        bdb.call_procedure(name, {"n": 2})
    assert "execute_query" in str(caught.value) and "SELECT * FROM" in str(caught.value)
    with pytest.raises(QueryError, match="does not exist"):
        bdb.call_procedure("no_such_procedure_here", {"n": 1})


@pytest.mark.backends("postgresql", "pgbouncer")
def test_postgres_scripts_give_every_result_set_in_one_transaction(
    bdb: dbflow.DatabaseManager, btable: str
) -> None:
    bdb.execute_query(f"CREATE TABLE {btable} (id int PRIMARY KEY)")
    sets = bdb.execute_query_sets(
        f"INSERT INTO {btable} VALUES (1); SELECT id FROM {btable}; "
        f"INSERT INTO {btable} VALUES (2) RETURNING id AS added; SELECT 'x' AS t WHERE false"
    )
    assert sets == [[{"id": 1}], [{"added": 2}], []]
    # A failing statement rolls back the ones before it.
    with pytest.raises(dbflow.IntegrityError):
        bdb.execute_query_sets(
            f"INSERT INTO {btable} VALUES (3); SELECT 1 AS a; INSERT INTO {btable} VALUES (1)"
        )
    assert bdb.execute_query(f"SELECT id FROM {btable} ORDER BY id") == [{"id": 1}, {"id": 2}]
    with pytest.raises(QueryError) as caught:
        bdb.execute_query("SELECT 1 AS a; SELECT 2 AS b")
    assert "execute_query_sets" in str(caught.value)
    assert bdb.execute_query_sets("SELECT :v::int AS v", {"v": 4}) == [[{"v": 4}]]


@pytest.mark.backends("postgresql", "pgbouncer")
def test_postgres_calls_in_a_rolled_back_transaction_leave_nothing(
    bdb: dbflow.DatabaseManager, proc: Any, btable: str
) -> None:
    bdb.execute_query(f"CREATE TABLE {btable} (id int)")
    name = unique("add_row")
    proc(
        "PROCEDURE",
        name,
        f"""CREATE PROCEDURE {name}(new_id int, INOUT rows_now int)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {btable} VALUES (new_id);
    SELECT count(*) INTO rows_now FROM {btable};
END $$""",
    )

    class Undo(Exception):
        pass

    with pytest.raises(Undo):
        with bdb.transaction() as tx:
            tx.call_procedure(name, {"new_id": 1, "rows_now": None}, output={"rows_now": "int"})
            second = tx.call_procedure(
                name, {"new_id": 2, "rows_now": None}, output={"rows_now": "int"}
            )
            assert second.output == {"rows_now": 2}
            assert tx.execute_query_sets(f"SELECT 1 AS a; SELECT count(*) AS n FROM {btable}") == [
                [{"a": 1}],
                [{"n": 2}],
            ]
            raise Undo
    assert bdb.execute_query(f"SELECT count(*) AS n FROM {btable}") == [{"n": 0}]


# ---- both, from asyncio ------------------------------------------------------


def test_async_manager_and_transaction_call_procedures(
    env: Any, backend: Any, proc: Any, bdb: dbflow.DatabaseManager
) -> None:
    name = unique("p_async")
    if backend.name == "sqlserver":
        proc(
            "PROCEDURE",
            name,
            f"""CREATE PROCEDURE {name} @x int, @y int OUTPUT AS
BEGIN PRINT 'async'; SET @y = @x + 1; SELECT @x AS x; RETURN 2; END""",
        )
        expected = ProcedureResult(
            result_sets=[[{"x": 1}]], output={"y": 2}, return_value=2, messages=["async"]
        )
        sets_sql = "SELECT 1 AS a; SELECT 2 AS b"
    else:
        proc(
            "PROCEDURE",
            name,
            f"""CREATE PROCEDURE {name}(x int, OUT y int) LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'async'; y := x + 1; END $$""",
        )
        expected = ProcedureResult(output={"y": 2}, messages=["async"])
        sets_sql = "SELECT 1 AS a; SELECT 2 AS b"
    manager = dbflow.AsyncDatabaseManager(
        env.database(backend=backend, pool_release_grace=0), config=env.config()
    )

    async def run() -> None:
        result = await manager.call_procedure(name, {"x": 1}, output={"y": "int"})
        assert result.output == expected.output
        assert result.result_sets == expected.result_sets
        assert result.return_value == expected.return_value
        assert result.messages == expected.messages
        assert await manager.execute_query_sets(sets_sql) == [[{"a": 1}], [{"b": 2}]]
        async with manager.transaction() as tx:
            inside = await tx.call_procedure(name, {"x": 1}, output={"y": "int"})
            assert inside.output == {"y": 2}
            assert await tx.execute_query_sets(sets_sql) == [[{"a": 1}], [{"b": 2}]]
        if backend.name == "sqlserver":
            with pytest.raises(MultipleResultSetsError):
                await manager.execute_query(sets_sql)

    try:
        asyncio.run(run())
    finally:
        manager.dispose()
