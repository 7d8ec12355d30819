"""Every error type where it belongs: typed, contextual, picklable, secret-free."""

from __future__ import annotations

import logging
import pickle
import socket

import pytest
from envs import with_options

import dbflow
from dbflow import exceptions as exc


def test_hierarchy_and_builtin_bases() -> None:
    for name in exc.__all__:
        cls = getattr(exc, name)
        assert issubclass(cls, dbflow.DatabaseError)
        assert getattr(dbflow, name) is cls
    assert issubclass(dbflow.QueryTimeoutError, TimeoutError)
    assert issubclass(dbflow.QueryTimeoutError, dbflow.QueryError)
    assert issubclass(dbflow.PoolTimeoutError, TimeoutError)
    assert issubclass(dbflow.DatabaseConnectionError, ConnectionError)
    assert issubclass(dbflow.IntegrityError, dbflow.QueryError)
    assert issubclass(dbflow.ParameterError, ValueError)
    assert issubclass(dbflow.ChecksumMismatchError, dbflow.MigrationError)


@pytest.mark.parametrize("name", exc.__all__)
def test_exceptions_pickle_with_their_context(name: str) -> None:
    cls = getattr(exc, name)
    original = cls(
        "[rpa_db] x failed: boom",
        database="rpa_db",
        operation="x",
        sqlstate="23505",
        error_number=7,
        may_have_run=True,
        messages=["step 1", "step 2"],
    )
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is cls
    assert (
        copy.database,
        copy.operation,
        copy.sqlstate,
        copy.error_number,
        copy.may_have_run,
        copy.messages,
    ) == ("rpa_db", "x", "23505", 7, True, ["step 1", "step 2"])
    assert str(copy) == str(original)
    assert cls("no messages").messages == []


def test_multiple_result_sets_error_pickles_its_count() -> None:
    error = dbflow.MultipleResultSetsError(
        "[rpa_db] execute_query failed: 3 result sets",
        database="rpa_db",
        operation="execute_query",
        may_have_run=True,
        messages=["printed"],
        result_sets=3,
    )
    assert isinstance(error, dbflow.QueryError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is dbflow.MultipleResultSetsError
    assert (copy.result_sets, copy.messages, copy.may_have_run) == (3, ["printed"], True)
    assert dbflow.MultipleResultSetsError("x").result_sets == 0


def raised_by_server(db: dbflow.DatabaseManager) -> dbflow.DatabaseError:
    with pytest.raises(dbflow.DatabaseError) as info:
        db.execute_query("SELECT 1/0")
    return info.value


def test_server_errors_pickle_too(db: dbflow.DatabaseManager) -> None:
    e = raised_by_server(db)
    copy = pickle.loads(pickle.dumps(e))
    assert copy.sqlstate == "22012" and copy.database == db.database_name


def test_statement_timeout_is_a_query_timeout_error(db: dbflow.DatabaseManager) -> None:
    with pytest.raises(dbflow.QueryTimeoutError) as info:
        with db.transaction() as tx:
            tx.execute_query("SET LOCAL statement_timeout = 50")
            tx.execute_query("SELECT pg_sleep(2)")
    assert info.value.sqlstate == "57014"
    assert db.execute_query("SELECT 1 AS ok") == [{"ok": 1}]


def test_wrong_password_is_a_connection_error_without_the_password(
    env, pg_password: str, caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="dbflow")
    wrong = "Wr0ng-" + "Secret-Pw"
    env.set("BADPW_CONNECTION_STRING", env.pg_url.replace(f":{pg_password}@", f":{wrong}@"))
    db = env.manager("badpw")
    try:
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            db.execute_query("SELECT 1")
        message = str(info.value)
        assert "authentication failed" in message
        assert "[badpw]" in message and "execute_query" in message
        for secret in (wrong, pg_password):
            assert secret not in message
            assert secret not in repr(info.value)
            assert all(secret not in r.getMessage() for r in caplog.records)
    finally:
        db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_explains_itself(env) -> None:  # type: ignore[no-untyped-def]
    env.set("DOWN_CONNECTION_STRING", f"postgresql://u:topsecretpw@127.0.0.1:{free_port()}/x")
    db = env.manager("down")
    try:
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            db.execute_query("SELECT 1")
        assert "refused" in str(info.value)
        assert "topsecretpw" not in str(info.value)
    finally:
        db.dispose()


def test_missing_database_explains_itself(env) -> None:  # type: ignore[no-untyped-def]
    env.set("NODB_CONNECTION_STRING", env.pg_url.rsplit("/", 1)[0] + "/no_such_database_here")
    db = env.manager("nodb")
    try:
        with pytest.raises(dbflow.DatabaseConnectionError, match="does not exist"):
            db.ping()
    finally:
        db.dispose()


def test_bad_sslmode_is_a_configuration_error(env) -> None:  # type: ignore[no-untyped-def]
    env.set("BADSSL_CONNECTION_STRING", with_options(env.pg_url, sslmode="sometimes"))
    with pytest.raises(dbflow.ConfigurationError, match="sslmode"):
        env.manager("badssl")


def test_logs_name_operation_but_never_parameter_values(db: dbflow.DatabaseManager, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="dbflow")
    marker = "very-private-value-4711"
    db.execute_query("SELECT :v AS v", {"v": marker})
    records = [r for r in caplog.records if r.name == "dbflow"]
    finished = [r for r in records if getattr(r, "dbflow", {}).get("operation") == "execute_query"]
    assert finished, [r.getMessage() for r in records]
    fields = finished[-1].dbflow  # type: ignore[attr-defined]
    assert fields["database"] == db.database_name
    assert fields["rows"] == "1"
    assert float(fields["duration_ms"]) >= 0
    assert all(marker not in r.getMessage() for r in records)


def test_logging_is_quiet_when_not_enabled(db: dbflow.DatabaseManager, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="dbflow")
    db.execute_query("SELECT 1")
    assert [r for r in caplog.records if r.name == "dbflow"] == []


def test_the_loggers_level_is_followed_as_it_changes(db: dbflow.DatabaseManager, caplog) -> None:  # type: ignore[no-untyped-def]
    """DEBUG records are not even built while the `dbflow` logger would drop
    them; turned on (or off) between two calls, the next call follows."""

    def finished_records() -> int:
        ops = [getattr(r, "dbflow", {}).get("operation") for r in caplog.records]
        return ops.count("execute_query")

    for level, expected in ((logging.WARNING, 0), (logging.DEBUG, 1), (logging.WARNING, 0)):
        caplog.clear()
        caplog.set_level(level, logger="dbflow")
        db.execute_query("SELECT 1")
        assert finished_records() == expected, (level, caplog.records)


def test_dbflow_prefect_without_prefect_says_how_to_install_it() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['prefect'] = None  # as if Prefect were not installed\n"
        "try:\n"
        "    import dbflow.prefect\n"
        "except ModuleNotFoundError as e:\n"
        "    print(type(e).__name__, e.name, '|', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ModuleNotFoundError prefect |"), done.stdout
    assert "dbflow[prefect]" in done.stdout


def test_a_failed_statement_is_raised_not_logged(db: dbflow.DatabaseManager, caplog) -> None:  # type: ignore[no-untyped-def]
    """A flow that catches and handles the exception must not find an ERROR
    line in its run log: the exception is the report."""
    caplog.set_level(logging.DEBUG, logger="dbflow")
    for sql in ("SELECT * FROM nope_missing", "INSERT INTO nope_missing VALUES (1)"):
        with pytest.raises(dbflow.QueryError):
            db.execute_query(sql)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
