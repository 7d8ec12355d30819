"""Stored procedures without a server: ``ProcedureResult``, ``TableValue``,
``MultipleResultSetsError``, and ``call_procedure`` / ``execute_query_sets``
on the mocks (sync and async, managers and transactions)."""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import re
from typing import Any

import pytest

import dbflow
from dbflow import MultipleResultSetsError, ParameterError, ProcedureResult, TableValue
from dbflow.testing import AsyncMockDatabaseManager, Call, MockDatabaseManager, UnscriptedQueryError
from dbflow.testing.mock import MESSAGES_LOGGED

# ---- ProcedureResult ---------------------------------------------------------


def test_a_procedure_result_defaults_to_empty() -> None:
    empty = ProcedureResult()
    assert empty.result_sets == [] and empty.output == {} and empty.rowcounts == []
    assert empty.return_value is None and empty.messages == []
    assert ProcedureResult().result_sets is not empty.result_sets  # no shared default
    with pytest.raises(AttributeError):
        empty.return_value = 1  # type: ignore[misc]


def test_a_procedure_result_is_built_by_keyword_and_pickles() -> None:
    result = ProcedureResult(
        result_sets=[[{"id": 1}, {"id": 2}], []],
        output={"total": 2, "note": "ok"},
        return_value=0,
        rowcounts=[2, 1],
        messages=["started", "done"],
    )
    assert [f for f in ProcedureResult.__dataclass_fields__] == [
        "result_sets",
        "output",
        "return_value",
        "rowcounts",
        "messages",
    ]
    again = pickle.loads(pickle.dumps(result))
    assert again == result and type(again) is ProcedureResult
    assert repr(result) == (
        "ProcedureResult(result_sets=[2 rows, 0 rows], output={'total': 2, 'note': 'ok'}, "
        "return_value=0, rowcounts=[2, 1], messages=2)"
    )
    assert ProcedureResult.__doc__ and dbflow.ProcedureResult is ProcedureResult
    assert {"ProcedureResult", "TableValue", "MultipleResultSetsError"} <= set(dbflow.__all__)


# ---- TableValue --------------------------------------------------------------


def test_a_table_value_of_tuples_dicts_or_any_iterable() -> None:
    ids = TableValue("dbo.IdList", ([i] for i in range(3)))
    assert (ids.type_name, ids.rows, ids.columns, len(ids)) == (
        "dbo.IdList",
        [(0,), (1,), (2,)],
        None,
        3,
    )
    assert repr(ids) == "TableValue('dbo.IdList', 3 rows)"
    people = TableValue("dbo.People", [{"id": 1, "name": "Ada"}, {"name": "Bo", "id": 2}])
    assert people.columns == ("id", "name")
    assert people.rows == [{"id": 1, "name": "Ada"}, {"name": "Bo", "id": 2}]
    ordered = TableValue("dbo.People", [{"id": 1, "name": "Ada"}], columns=["name", "id"])
    assert ordered.columns == ("name", "id") and repr(ordered) == "TableValue('dbo.People', 1 row)"
    named = TableValue("dbo.People", [(1, "Ada")], columns=("id", "name"))
    assert named.columns == ("id", "name") and named.rows == [(1, "Ada")]
    assert len(TableValue("dbo.IdList", [])) == 0


def test_a_table_value_pickles_copies_and_compares_by_value() -> None:
    tv = TableValue("dbo.People", [{"id": 1, "name": "Ada"}])
    again = pickle.loads(pickle.dumps(tv))
    assert again == tv and again is not tv and again.columns == ("id", "name")
    deep = copy.deepcopy(tv)
    assert deep == tv and deep.rows is not tv.rows
    assert tv != TableValue("dbo.Other", [{"id": 1, "name": "Ada"}])
    assert tv != TableValue("dbo.People", [{"id": 2, "name": "Ada"}])
    with pytest.raises(AttributeError, match="read-only"):
        tv.rows = []
    with pytest.raises(TypeError):
        hash(tv)


@pytest.mark.parametrize(
    ("type_name", "rows", "columns", "message"),
    [
        ("", [(1,)], None, r"type_name must be the table type's name .* not ''"),
        (42, [(1,)], None, r"type_name .* not 42"),
        (
            "dbo.P",
            [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "nmae": "c"}],
            None,
            r"row 2 has other keys than row 0, missing 'name', extra 'nmae'",
        ),
        ("dbo.P", [{"id": 1}, (2,)], None, r"row 1 is a tuple and row 0 a dict"),
        ("dbo.P", [(1,), {"id": 2}], None, r"row 1 is a dict and row 0 a tuple"),
        ("dbo.P", [(1, "a"), (2,)], None, r"row 1 has 1 values and row 0 has 2"),
        ("dbo.P", [(1, "a")], ["id"], r"row 0 has 2 values and columns= names 1"),
        (
            "dbo.P",
            [{"id": 1, "name": "a"}],
            ["id", "title"],
            r"columns= disagrees with the rows' keys \(not in columns: 'name'\) "
            r"\(not in the rows: 'title'\)",
        ),
        ("dbo.P", "1,2,3", None, r"rows is a str; pass the rows as a list"),
        ("dbo.P", b"\x01", None, r"rows is a bytes"),
        ("dbo.P", {"id": 1}, None, r"rows is a single dict"),
        ("dbo.P", 7, None, r"rows is an int, which is not iterable"),
        ("dbo.P", [1, 2], None, r"row 0 is an int; .* \[\(1,\), \.\.\.\]"),
        ("dbo.P", [(1,)], "id", r"columns is a str"),
        ("dbo.P", [(1, 2)], ["id", "id"], r"columns names 'id' twice"),
    ],
)
def test_a_table_value_says_what_is_wrong(
    type_name: Any, rows: Any, columns: Any, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        TableValue(type_name, rows, columns=columns)


def test_a_table_value_keeps_arrow_data_as_it_is() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"id": [1, 2, 3]})
    tv = TableValue("dbo.IdList", table)
    assert tv.rows is table and tv.columns is None and tv.is_arrow and len(tv) == 3
    assert repr(tv) == "TableValue('dbo.IdList', 3 rows)"
    assert pickle.loads(pickle.dumps(tv)) == tv
    assert copy.deepcopy(tv).rows is table
    assert len(TableValue("dbo.IdList", table.to_batches()[0])) == 3
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    assert repr(TableValue("dbo.IdList", reader)) == "TableValue('dbo.IdList', RecordBatchReader)"
    with pytest.raises(ParameterError, match="Arrow data names its own columns"):
        TableValue("dbo.IdList", table, columns=["id"])
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"id": [1, 2]})
    assert len(TableValue("dbo.IdList", frame)) == 2
    assert TableValue("dbo.IdList", frame) == TableValue("dbo.IdList", frame.clone())


# ---- MultipleResultSetsError --------------------------------------------------


def test_multiple_result_sets_error_pickles_with_its_count_and_messages() -> None:
    error = MultipleResultSetsError(
        "[shop] execute_query failed: 2 result sets",
        database="shop",
        operation="execute_query",
        error_number=None,
        may_have_run=True,
        messages=["hello"],
        result_sets=2,
    )
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.result_sets, again.messages, again.database) == (
        MultipleResultSetsError,
        2,
        ["hello"],
        "shop",
    )
    assert isinstance(again, dbflow.QueryError) and str(again) == str(error)


# ---- the mocks -----------------------------------------------------------------

RESULT = ProcedureResult(
    result_sets=[[{"id": 1}], [{"n": 1}]],
    output={"total": 5},
    return_value=0,
    rowcounts=[1],
    messages=["closing 1 order"],
)


def test_call_procedure_is_scripted_and_recorded() -> None:
    mock = MockDatabaseManager("shop", database_type="sqlserver")
    mock.add_result("dbo.close_orders", RESULT)
    result = mock.call_procedure(
        "dbo.close_orders", {"customer_id": 7, "total": 0}, output={"total": "int"}
    )
    assert result == RESULT
    result.result_sets[0].append({"id": 99})  # a copy: the script is unchanged
    assert mock.call_procedure("dbo.close_orders") == RESULT
    call = mock.assert_called_with_sql("dbo.close_orders", {"customer_id": 7, "total": 0})
    assert call == Call(
        "call_procedure",
        "dbo.close_orders",
        {"customer_id": 7, "total": 0},
        database="shop",
        output={"total": "int"},
    )
    assert mock.calls[1].output is None
    assert [c.method for c in mock.queries_matching("close_orders")] == ["call_procedure"] * 2


def test_procedure_results_from_dicts_rows_counts_callables_and_errors() -> None:
    mock = MockDatabaseManager("shop")
    mock.add_result("p_dict", {"output": {"x": 1}, "return_value": 3})
    mock.add_result("p_rows", [{"id": 1}])
    mock.add_result("p_sets", [[{"id": 1}], [{"id": 2}]])
    mock.add_result("p_count", 4)
    mock.add_result(re.compile("^p_call"), lambda name, p: {"output": {"echo": p["v"]}})
    mock.add_result("p_fail", mock.timeout_error())
    assert mock.call_procedure("p_dict") == ProcedureResult(output={"x": 1}, return_value=3)
    assert mock.call_procedure("p_rows").result_sets == [[{"id": 1}]]
    assert mock.call_procedure("p_sets").result_sets == [[{"id": 1}], [{"id": 2}]]
    assert mock.call_procedure("p_count") == ProcedureResult(rowcounts=[4])
    assert mock.call_procedure("p_call_me", {"v": 8}).output == {"echo": 8}
    with pytest.raises(dbflow.QueryTimeoutError):
        mock.call_procedure("p_fail")
    with pytest.raises(TypeError, match="'rows' is none of them"):
        mock.add_result("p", {"rows": []})


def test_call_procedure_validates_its_arguments() -> None:
    mock = MockDatabaseManager("shop", database_type="sqlserver")
    with pytest.raises(ParameterError, match=r"\[shop\] call_procedure failed: .*non-empty str"):
        mock.call_procedure("")
    with pytest.raises(ParameterError, match="without @: 'id', not '@id'"):
        mock.call_procedure("dbo.p", {"@id": 1})
    with pytest.raises(ParameterError, match=r"output\['total'\] must be the parameter's SQL type"):
        mock.call_procedure("dbo.p", output={"total": 5})  # type: ignore[dict-item]
    with pytest.raises(ParameterError, match=r"call_procedure failed: .*:bad"):
        mock.call_procedure("dbo.p", {"bad": object()})
    assert mock.calls == []


def test_unscripted_calls_are_empty_or_raise_when_strict() -> None:
    lenient = MockDatabaseManager()
    assert lenient.call_procedure("dbo.p") == ProcedureResult()
    assert lenient.execute_query_sets("EXEC dbo.p") == []
    strict = MockDatabaseManager("shop", strict=True)
    with pytest.raises(UnscriptedQueryError, match=r"add_result\('dbo.p', ProcedureResult"):
        strict.call_procedure("dbo.p")
    with pytest.raises(UnscriptedQueryError, match=r"add_result\('EXEC dbo.p', \[rows, rows\]\)"):
        strict.execute_query_sets("EXEC dbo.p")


def test_execute_query_sets_and_execute_query_on_several_result_sets() -> None:
    mock = MockDatabaseManager("shop", database_type="sqlserver")
    mock.add_result("EXEC dbo.report", [[{"a": 1}], [{"b": 2}, {"b": 3}]])
    mock.add_result("SELECT 1 AS a", [{"a": 1}])
    mock.add_result("UPDATE t SET x = 1", 3)
    mock.add_result("EXEC dbo.one", [[{"a": 1}]])
    mock.add_result("EXEC dbo.proc", RESULT)
    assert mock.execute_query_sets("EXEC dbo.report") == [[{"a": 1}], [{"b": 2}, {"b": 3}]]
    assert mock.execute_query_sets("SELECT 1 AS a") == [[{"a": 1}]]
    assert mock.execute_query_sets("UPDATE t SET x = 1") == []
    assert mock.execute_query_sets("EXEC dbo.proc") == RESULT.result_sets
    assert mock.execute_query("EXEC dbo.one") == [{"a": 1}]
    with pytest.raises(MultipleResultSetsError) as info:
        mock.execute_query("EXEC dbo.report")
    error = info.value
    assert (error.result_sets, error.database, error.operation) == (2, "shop", "execute_query")
    assert "use execute_query_sets(sql, params)" in str(error) and error.may_have_run
    with pytest.raises(MultipleResultSetsError) as info:
        mock.execute_query("EXEC dbo.proc")
    assert info.value.messages == ["closing 1 order"]
    with pytest.raises(MultipleResultSetsError):
        mock.execute_query_with_retry("EXEC dbo.report")
    assert mock.calls[0] == Call("execute_query_sets", "EXEC dbo.report", None, database="shop")


def test_transactions_call_procedures_and_read_result_sets() -> None:
    mock = MockDatabaseManager("shop", database_type="sqlserver")
    mock.add_result("dbo.p", RESULT)
    mock.add_result("EXEC dbo.p", [[{"a": 1}], [{"b": 2}]])
    with mock.transaction() as tx:
        assert tx.call_procedure("dbo.p", {"id": 1}, output={"total": "int"}) == RESULT
        assert tx.execute_query_sets("EXEC dbo.p") == [[{"a": 1}], [{"b": 2}]]
        with pytest.raises(MultipleResultSetsError, match=r"transaction\.execute_query failed"):
            tx.execute_query("EXEC dbo.p")
    assert [(c.method, c.in_transaction) for c in mock.calls] == [
        ("begin", False),
        ("transaction.call_procedure", True),
        ("transaction.execute_query_sets", True),
        ("transaction.execute_query", True),
        ("commit", False),
    ]
    assert mock.calls[1].output == {"total": "int"}


def test_the_async_mock_and_its_transactions() -> None:
    sync = MockDatabaseManager("shop", database_type="sqlserver")
    sync.add_result("dbo.p", RESULT)
    sync.add_result("EXEC dbo.p", [[{"a": 1}], [{"b": 2}]])
    db = AsyncMockDatabaseManager(sync)

    async def main() -> None:
        assert await db.call_procedure("dbo.p", {"id": 1}, output={"total": "int"}) == RESULT
        assert await db.execute_query_sets("EXEC dbo.p") == [[{"a": 1}], [{"b": 2}]]
        with pytest.raises(MultipleResultSetsError):
            await db.execute_query("EXEC dbo.p")
        async with db.transaction() as tx:
            assert (await tx.call_procedure("dbo.p")).output == {"total": 5}
            assert len(await tx.execute_query_sets("EXEC dbo.p")) == 2

    asyncio.run(main())
    assert [c.method for c in sync.calls if c.sql is not None] == [
        "call_procedure",
        "execute_query_sets",
        "execute_query",
        "transaction.call_procedure",
        "transaction.execute_query_sets",
    ]


def test_scripted_messages_are_logged_as_the_real_manager_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dbflow")
    mock = MockDatabaseManager("shop", database_type="sqlserver")
    mock.add_result("dbo.few", ProcedureResult(messages=["one", "two"]))
    many = [f"line {i}" for i in range(MESSAGES_LOGGED + 7)]
    mock.add_result("dbo.many", ProcedureResult(messages=many))
    mock.call_procedure("dbo.few")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("dbflow", logging.INFO, "[shop] one"),
        ("dbflow", logging.INFO, "[shop] two"),
    ]
    caplog.clear()
    result = mock.call_procedure("dbo.many")
    assert result.messages == many
    logged = [r.getMessage() for r in caplog.records]
    assert MESSAGES_LOGGED == 50 and len(logged) == 51
    assert logged[:50] == [f"[shop] line {i}" for i in range(50)]
    assert logged[50] == (
        "[shop] ... and 7 more server messages not logged "
        "(ProcedureResult.messages and the error's .messages have them all)"
    )
    caplog.clear()
    failing = dbflow.QueryError("[shop] call_procedure failed: boom", messages=["before"])
    mock.add_result("dbo.fails", failing)
    with pytest.raises(dbflow.QueryError) as info:
        mock.call_procedure("dbo.fails")
    assert info.value.messages == ["before"]
    assert [r.getMessage() for r in caplog.records] == ["[shop] before"]


def test_table_values_are_recorded_on_sql_server_and_refused_on_postgresql() -> None:
    ids = TableValue("dbo.IdList", [(1,), (2,)])
    sqlserver = MockDatabaseManager("shop", database_type="sqlserver")
    sqlserver.call_procedure("dbo.p", {"ids": ids, "flag": True})
    sqlserver.execute_query_sets("SELECT * FROM :ids AS t WHERE :flag = 1", {"ids": ids, "flag": 1})
    sqlserver.execute_query("SELECT id FROM :ids AS t", {"ids": ids})
    assert [c.params["ids"] for c in sqlserver.calls] == [ids, ids, ids]
    sqlserver.assert_called_with_sql("dbo.p", {"ids": ids, "flag": True})

    postgres = MockDatabaseManager("shop", database_type="postgresql")
    tx = postgres.transaction()
    for call in (
        lambda: postgres.call_procedure("p", {"ids": ids}),
        lambda: postgres.execute_query_sets("SELECT * FROM t WHERE id = ANY(:ids)", {"ids": ids}),
        lambda: postgres.execute_query("SELECT * FROM t WHERE id = ANY(:ids)", {"ids": ids}),
        lambda: tx.call_procedure("p", {"ids": ids}),
    ):
        with pytest.raises(ParameterError) as info:
            call()
        assert "PostgreSQL has no table-valued parameters" in str(info.value)
        assert "unnest(:ids) or = ANY(:ids)" in str(info.value)
    assert postgres.calls == []


def test_a_named_view_of_a_mock_calls_procedures_under_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dbflow")
    mock = MockDatabaseManager("base")
    mock.add_result("p", ProcedureResult(messages=["hi"]))
    view = mock.named("rpa_db")
    view.call_procedure("p")
    assert mock.calls[0].database == "rpa_db"
    assert [r.getMessage() for r in caplog.records] == ["[rpa_db] hi"]
