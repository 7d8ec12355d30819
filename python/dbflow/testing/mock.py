"""``MockDatabaseManager``: the real manager's interface with scripted
results, recorded calls and real dbflow exceptions on demand (its asyncio
face, ``AsyncMockDatabaseManager``, is in ``dbflow.testing.async_mock``).

Stored procedures: ``add_result("dbo.close_orders", ProcedureResult(...))``
answers ``call_procedure("dbo.close_orders", ...)`` (a dict with
``ProcedureResult``'s field names is turned into one), and
``add_result(sql, [rows, rows])`` (a list of lists of rows) answers
``execute_query_sets``. A ``call_procedure`` call is recorded with the
procedure's name as ``Call.sql``, its parameters as ``Call.params`` and
``output=`` as ``Call.output``. The messages of a scripted
``ProcedureResult`` (or of a scripted ``DatabaseError``) are logged to the
``dbflow`` logger as the real manager logs the server's."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NoReturn, cast, overload

from typing_extensions import Self

from dbflow import (
    ConfigManager,
    ConfigurationError,
    DatabaseConnectionError,
    DatabaseError,
    MigrationError,
    MultipleResultSetsError,
    ParameterError,
    PoolTimeoutError,
    ProcedureResult,
    QueryTimeoutError,
    TableValue,
    check_params,
)
from dbflow._arrow import require, to_pandas, to_polars
from dbflow._native import timeout_sqlstate
from dbflow.testing import arrow_mock
from dbflow.testing.arrow_mock import ArrowArray, ArrowStream, MockArrowBatches

# The asyncio face of a double, importable from here as it always was.
from dbflow.testing.async_mock import AsyncMockDatabaseManager as AsyncMockDatabaseManager
from dbflow.testing.async_mock import as_async as as_async

Params = Mapping[str, Any]
Row = dict[str, Any]
Matcher = str | re.Pattern[str] | Callable[[str, Any], bool]
Response = (
    list[Row]
    | list[list[Row]]
    | int
    | ProcedureResult
    | Mapping[str, Any]
    | BaseException
    | Callable[[str, Any], Any]
)

#: How many server messages one call logs; the rest are counted in one line.
MESSAGES_LOGGED = 50

_logger = logging.getLogger("dbflow")


class _Any:
    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


class UnscriptedQueryError(AssertionError):
    """A strict mock received SQL nobody scripted a result for."""


@dataclass(frozen=True)
class Call:
    """One recorded call: the method, its SQL and parameters."""

    method: str
    sql: str | None = None
    params: Any = None
    in_transaction: bool = False
    #: The database name the code under test asked for.
    database: str | None = None
    #: ``call_procedure``'s ``output=`` (OUTPUT parameter names to SQL
    #: types), ``None`` for every other call. (``sql`` is the procedure's
    #: name there, and ``params`` its parameters as given.)
    output: dict[str, str] | None = None


def _normalize(sql: str) -> str:
    return " ".join(sql.split())


def _as_response(response: Any) -> Any:
    """A scripted answer as the mock keeps it: a dict with
    ``ProcedureResult``'s field names becomes one."""
    if isinstance(response, Mapping):
        fields = set(ProcedureResult.__dataclass_fields__)
        unknown = sorted(set(response) - fields, key=str)
        if unknown:
            raise TypeError(
                f"a dict result is a ProcedureResult's fields ({', '.join(sorted(fields))}); "
                f"{', '.join(map(repr, unknown))} is none of them. Script rows as a list of "
                "dicts, result sets as a list of lists of dicts"
            )
        return ProcedureResult(**response)
    return response


def _is_sets(response: Any) -> bool:
    """Whether a scripted list is result sets (a list of lists of rows)."""
    return (
        isinstance(response, list)
        and bool(response)
        and all(isinstance(rows, list) for rows in response)
    )


def _result_sets(response: Any) -> list[list[Row]]:
    """A scripted answer as ``execute_query_sets`` returns it: rows are one
    result set, ``[]`` or a row count none."""
    if isinstance(response, ProcedureResult):
        return [list(rows) for rows in response.result_sets]
    if isinstance(response, int):
        return []
    if _is_sets(response):
        return [list(rows) for rows in response]
    rows = list(response)
    return [rows] if rows else []


def log_server_messages(database: str, operation: str, messages: Sequence[str]) -> None:
    """Log a call's server messages to the ``dbflow`` logger as the real
    managers do: ``[<database>] <message>`` at INFO, at most
    ``MESSAGES_LOGGED`` of them, then one line counting the rest."""
    fields = {"database": database, "operation": operation}
    for text in messages[:MESSAGES_LOGGED]:
        _logger.info("[%s] %s", database, text, extra={"dbflow": fields})
    rest = len(messages) - MESSAGES_LOGGED
    if rest > 0:
        _logger.info(
            "[%s] ... and %d more server messages not logged "
            "(ProcedureResult.messages and the error's .messages have them all)",
            database,
            rest,
            extra={"dbflow": fields},
        )


@dataclass
class _Rule:
    matcher: Matcher
    response: Response
    times: int | None
    arrow_schema: Any = None

    def matches(self, sql: str, params: Any) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.search(sql) is not None
        if isinstance(self.matcher, str):
            return _normalize(self.matcher) == _normalize(sql)
        return bool(self.matcher(sql, params))


@dataclass
class MockMigrations:
    """What the mock reports about migrations (set the fields you need)."""

    current_version: str | None = "V001"
    pending: list[str] = field(default_factory=list)
    read_only: bool = False


class MockDatabaseManager:
    """A stand-in for :class:`dbflow.DatabaseManager` (same constructor and
    methods; see ``dbflow.DatabaseManagerProtocol``).

    Script results per SQL text (whitespace-insensitive), regular expression
    or predicate ``(sql, params) -> bool`` with :meth:`add_result`; the
    first matching rule wins. Unscripted queries return ``[]``, or raise
    :class:`UnscriptedQueryError` with ``strict=True``. Parameters are
    validated exactly as the real manager validates them.
    """

    def __init__(
        self,
        database_name: str = "mock_db",
        *,
        environment: str | None = None,
        flow_name: str | None = None,
        config: ConfigManager | None = None,
        migrations_dir: str | PathLike[str] | None = None,
        password_provider: Callable[[], str] | None = None,
        database_type: str = "postgresql",
        strict: bool = False,
    ) -> None:
        if password_provider is not None and not callable(password_provider):
            raise ConfigurationError(
                f"[{database_name}] DatabaseManager() failed: password_provider must be a "
                "callable taking no arguments that returns the password (a str)",
                database=database_name,
                operation="DatabaseManager()",
            )
        # Accepted as the real manager accepts it; a mock opens no connection
        # and never calls it.
        self._password_provider = password_provider
        self._name = database_name
        self._type = database_type
        self._migrations_dir = Path(migrations_dir) if migrations_dir is not None else None
        self.environment = environment or (config.environment if config else "test")
        self.flow_name = flow_name
        self.strict = strict
        self.calls: list[Call] = []
        self.migrations = MockMigrations()
        self.health_status = "healthy"
        self.pool_size = 5
        self.max_overflow = 10
        self.closed = False
        self._rules: list[_Rule] = []
        self._failures: dict[int, BaseException] = {}
        self._lock = threading.Lock()

    # ---- scripting -------------------------------------------------------

    def add_result(
        self,
        matcher: Matcher,
        response: Response,
        *,
        times: int | None = None,
        arrow_schema: Any = None,
    ) -> Self:
        """Answer SQL matching `matcher` with `response`: rows, a row count
        (for ``execute_many``), an exception to raise, or a callable
        ``(sql, params)`` returning either. `times` limits how often.

        Procedures and batches: for ``call_procedure`` the matcher sees the
        procedure's name as the SQL, and `response` is a
        ``dbflow.ProcedureResult`` (or a dict of its fields; rows are taken
        as its one result set, a row count as its ``rowcounts``); its
        ``messages`` are logged to the ``dbflow`` logger as the real manager
        logs the server's. For ``execute_query_sets``, a list of result sets
        (each a list of rows); rows are one result set, ``[]`` none. Given
        more than one result set (result sets or a ``ProcedureResult``),
        ``execute_query`` and the other one-result reads raise
        ``dbflow.MultipleResultSetsError`` as the real manager does.

        ``fetch_arrow``, ``iter_arrow``, ``fetch_polars`` and ``fetch_pandas``
        answer with the same rows, typed as pyarrow infers them from the
        values; `arrow_schema` (a ``pyarrow.Schema``) types them instead, for
        what inference cannot know: ``decimal128(12, 2)``, ``int32``, a column
        that is all NULL, the columns of an empty result. A row key the
        schema does not name is an error; a name missing from a row is NULL."""
        self._rules.append(_Rule(matcher, _as_response(response), times, arrow_schema))
        return self

    def fail_on_call(self, number: int, error: BaseException) -> Self:
        """Raise `error` on the `number`-th database call (1-based), whatever
        its SQL — e.g. a connection error on the second query."""
        self._failures[number] = error
        return self

    def connection_error(self, message: str = "connection refused") -> DatabaseConnectionError:
        return DatabaseConnectionError(
            f"[{self._name}] execute_query failed: {message}",
            database=self._name,
            operation="execute_query",
        )

    def timeout_error(self, seconds: float = 30) -> QueryTimeoutError:
        return QueryTimeoutError(
            f"[{self._name}] execute_query_with_timeout failed: the statement ran past its "
            f"deadline of {seconds:.3f} s and was stopped",
            database=self._name,
            operation="execute_query_with_timeout",
            sqlstate=timeout_sqlstate(self._type),
        )

    def pool_exhausted_error(self) -> PoolTimeoutError:
        return PoolTimeoutError(
            f"[{self._name}] execute_query failed: no connection free within pool_timeout=30s: "
            f"all {self.pool_size + self.max_overflow} connections (pool_size={self.pool_size} + "
            f"max_overflow={self.max_overflow}) are in use",
            database=self._name,
            operation="execute_query",
        )

    # ---- inspection ------------------------------------------------------

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def queries_matching(self, pattern: str | re.Pattern[str]) -> list[Call]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        return [c for c in self.calls if c.sql is not None and regex.search(c.sql)]

    def assert_called_with_sql(self, sql: str, params: Any = ANY) -> Call:
        """Assert some call ran `sql` (whitespace-insensitive) with `params`."""
        wanted = _normalize(sql)
        for call in self.calls:
            if call.sql is not None and _normalize(call.sql) == wanted and params == call.params:
                return call
        seen = "\n  ".join(f"{c.method}: {c.sql!r} {c.params!r}" for c in self.calls) or "(none)"
        raise AssertionError(f"no call ran {sql!r} with {params!r}; calls:\n  {seen}")

    def assert_not_called(self) -> None:
        if self.calls:
            raise AssertionError(f"expected no calls, got {len(self.calls)}: {self.calls}")

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    # ---- the DatabaseManager interface ------------------------------------

    @property
    def database_name(self) -> str:
        return self._name

    @property
    def database_type(self) -> str:
        return self._type

    @property
    def connection_string(self) -> str:
        return f"mock://{self._name}"

    @property
    def migration_artifact(self) -> bool:
        """A mock publishes no Prefect artifact of its migration runs."""
        return False

    @property
    def migrations_dir(self) -> Path | None:
        """The ``migrations_dir`` given to the constructor (a mock reads no files)."""
        return self._migrations_dir

    def _dialect(self) -> str:
        return self._type

    def _answer(
        self,
        method: str,
        sql: str,
        params: Any,
        in_transaction: bool,
        output: dict[str, str] | None = None,
    ) -> Any:
        return self._respond(method, sql, params, in_transaction, output)[0]

    def _respond(
        self,
        method: str,
        sql: str,
        params: Any,
        in_transaction: bool,
        output: dict[str, str] | None = None,
    ) -> tuple[Any, Any]:
        """The scripted answer to a call (recorded), and its rule's Arrow
        schema. Server messages it carries are logged, as the real manager
        logs them (also those of an error, before it is raised)."""
        with self._lock:
            self.calls.append(
                Call(method, sql, copy.deepcopy(params), in_transaction, self._name, output)
            )
            number = len([c for c in self.calls if c.sql is not None])
            failure = self._failures.pop(number, None)
            rule = next((r for r in self._rules if r.matches(sql, params)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
        if failure is not None:
            self._raise(method, failure)
        if rule is None:
            if self.strict:
                raise UnscriptedQueryError(self._unscripted(method, sql, params))
            return [], None
        response = rule.response
        if callable(response) and not isinstance(response, BaseException):
            response = _as_response(response(sql, params))
        if isinstance(response, BaseException):
            self._raise(method, response)
        if isinstance(response, ProcedureResult) and response.messages:
            log_server_messages(self._name, method, response.messages)
        return copy.deepcopy(response), rule.arrow_schema

    def _raise(self, method: str, error: BaseException) -> NoReturn:
        if isinstance(error, DatabaseError) and error.messages:
            log_server_messages(self._name, method, error.messages)
        raise error

    def _one_result(self, method: str, response: Any) -> list[Row]:
        """A scripted answer as a one-result read returns it; more than one
        result set raises ``MultipleResultSetsError`` as the real one does."""
        if isinstance(response, int):
            return []
        if not isinstance(response, ProcedureResult) and not _is_sets(response):
            return list(response)
        sets = _result_sets(response)
        if len(sets) > 1:
            operation = method.removeprefix("transaction.")
            raise MultipleResultSetsError(
                f"[{self._name}] {method} failed: the statement produced {len(sets)} result "
                f"sets, and {operation} returns one; use execute_query_sets(sql, params) for "
                "every result set, or call_procedure(name, params) for a procedure's result "
                "sets, OUTPUT parameters and return value",
                database=self._name,
                operation=method,
                may_have_run=True,
                messages=list(getattr(response, "messages", [])),
                result_sets=len(sets),
            )
        return sets[0] if sets else []

    def _sendable(self, method: str, params: Any) -> Any:
        """`params` as ``check_params`` can judge them: a ``TableValue`` is
        accepted on SQL Server (checked by its constructor) and refused on
        PostgreSQL, as by the real manager."""
        if not isinstance(params, Mapping):
            return params
        tables = [name for name, value in params.items() if isinstance(value, TableValue)]
        if not tables:
            return params
        if self._type != "sqlserver":
            name = tables[0]
            raise arrow_mock.parameter_error(
                self._name,
                method,
                f"parameter :{name} is a TableValue ({params[name]!r}), and PostgreSQL has no "
                f"table-valued parameters; pass a list as an array parameter and use "
                f"unnest(:{name}) or = ANY(:{name})",
            )
        return {name: None if name in tables else value for name, value in params.items()}

    def _check(self, method: str, sql: str, params: Params | None) -> None:
        check_params(
            sql, self._sendable(method, params), database_name=self._name, dialect=self._dialect()
        )

    def _unscripted(self, method: str, sql: str, params: Any) -> str:
        scripted = [
            r.matcher.pattern
            if isinstance(r.matcher, re.Pattern)
            else _normalize(r.matcher)
            if isinstance(r.matcher, str)
            else getattr(r.matcher, "__name__", repr(r.matcher))
            for r in self._rules
            if r.times is None or r.times > 0
        ]
        listed = "; ".join(repr(m) for m in scripted) if scripted else "nothing yet"
        answer, empty = "rows", "[]"
        if method.endswith("call_procedure"):
            answer, empty = "ProcedureResult(...)", "an empty ProcedureResult()"
        elif method.endswith("execute_query_sets"):
            answer = "[rows, rows]"
        return (
            f"[{self._name}] {method}: no result scripted for {_normalize(sql)!r} "
            f"(params {params!r}). Scripted: {listed}. Add "
            f"add_result({_normalize(sql)!r}, {answer}), or make the mock lenient "
            "(MockDatabaseManager(strict=False), @pytest.mark.dbflow_mock(strict=False)) "
            f"to answer {empty} to anything unscripted"
        )

    def named(self, database_name: str) -> MockDatabaseManager:
        """This mock as seen by code that asked for `database_name`: the same
        scripts, calls and state, with errors and calls naming that database."""
        return _NamedMock(self, database_name)

    def _query(
        self, method: str, sql: str, params: Params | None, in_transaction: bool = False
    ) -> list[Row]:
        self._check(method, sql, params)
        return self._one_result(method, self._answer(method, sql, params, in_transaction))

    def _query_sets(
        self, method: str, sql: str, params: Params | None, in_transaction: bool = False
    ) -> list[list[Row]]:
        self._check(method, sql, params)
        return _result_sets(self._answer(method, sql, params, in_transaction))

    def _procedure(
        self,
        method: str,
        name: str,
        params: Params | None,
        output: Mapping[str, str] | None,
        in_transaction: bool = False,
    ) -> ProcedureResult:
        outputs = self._check_procedure(method, name, params, output)
        result = self._answer(method, name, params, in_transaction, outputs)
        if isinstance(result, ProcedureResult):
            return result
        if isinstance(result, int):
            return ProcedureResult(rowcounts=[result])
        return ProcedureResult(result_sets=_result_sets(result))

    def _check_procedure(
        self,
        method: str,
        name: str,
        params: Params | None,
        output: Mapping[str, str] | None,
    ) -> dict[str, str] | None:
        """Validate ``call_procedure``'s arguments as the real manager does
        before anything is sent; ``output`` as recorded."""

        def fail(message: str) -> ParameterError:
            return arrow_mock.parameter_error(self._name, method, message)

        if not isinstance(name, str) or not name.strip():
            raise fail(f"the procedure's name must be a non-empty str, not {name!r}")
        if params is not None and not isinstance(params, Mapping):
            raise fail(
                f"params must be a dict of parameter names to values, not {type(params).__name__}"
            )
        for key in params or {}:
            if not isinstance(key, str) or not key:
                raise fail(f"parameter names are non-empty str, not {key!r}")
            if key.startswith("@"):
                raise fail(f"parameter names are given without @: {key[1:]!r}, not {key!r}")
        outputs: dict[str, str] | None = None
        if output is not None:
            if not isinstance(output, Mapping):
                raise fail(
                    "output must be a dict of OUTPUT parameter names to SQL types, e.g. "
                    f"{{'total': 'int'}}, not {type(output).__name__}"
                )
            outputs = {}
            for key, sql_type in output.items():
                if not isinstance(key, str) or not key or key.startswith("@"):
                    raise fail(
                        f"output names are non-empty str without @ (e.g. 'total'), not {key!r}"
                    )
                if not isinstance(sql_type, str) or not sql_type.strip():
                    raise fail(
                        f"output[{key!r}] must be the parameter's SQL type as a str (e.g. "
                        f"'int', 'nvarchar(200)'), not {sql_type!r}"
                    )
                outputs[key] = sql_type
        values = self._sendable(method, params)
        if values:
            # The values are judged by the real conversion (a statement
            # naming each parameter once).
            named = [key for key in values if key.isidentifier()]
            try:
                check_params(
                    "SELECT " + ", ".join(f":{key}" for key in named),
                    {key: values[key] for key in named},
                    database_name=self._name,
                    dialect=self._dialect(),
                )
            except ParameterError as e:
                raise arrow_mock.renamed(e, method) from None
        return outputs

    def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> ProcedureResult:
        """The scripted ``ProcedureResult`` for procedure `name` (an empty
        one when unscripted and not strict). Recorded with `name` as
        ``Call.sql`` and `output` as ``Call.output``."""
        return self._procedure("call_procedure", name, params, output)

    def execute_query_sets(self, sql: str, params: Params | None = None) -> list[list[Row]]:
        """The scripted result sets (``[]`` when unscripted and not strict)."""
        return self._query_sets("execute_query_sets", sql, params)

    @overload
    def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[False] = False
    ) -> list[Row]: ...
    @overload
    def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[True]
    ) -> list[tuple[Any, ...]]: ...
    def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: bool = False
    ) -> list[Row] | list[tuple[Any, ...]]:
        rows = self._query("execute_query", sql, params)
        return [tuple(row.values()) for row in rows] if as_tuples else rows

    def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        rows = list(seq_of_params)
        for index, row in enumerate(rows):
            check_params(
                sql,
                self._sendable("execute_many", row),
                database_name=self._name,
                operation="execute_many",
                dialect=self._dialect(),
                row=index,
            )
        result = self._answer("execute_many", sql, rows, False)
        return result if isinstance(result, int) else len(rows)

    def execute_transaction(
        self, queries: Sequence[tuple[str, Params | None] | tuple[str] | str]
    ) -> list[list[Row]]:
        results = []
        try:
            for q in queries:
                sql, params = (
                    (q, None) if isinstance(q, str) else (q[0], q[1] if len(q) > 1 else None)
                )
                results.append(self._query("execute_transaction", sql, params, in_transaction=True))
        except BaseException:
            self.calls.append(Call("rollback"))
            raise
        self.calls.append(Call("commit"))
        return results

    @overload
    def iter_query(
        self,
        sql: str,
        params: Params | None = None,
        batch_size: int = 1000,
        *,
        as_tuples: Literal[False] = False,
    ) -> Iterator[Row]: ...
    @overload
    def iter_query(
        self,
        sql: str,
        params: Params | None = None,
        batch_size: int = 1000,
        *,
        as_tuples: Literal[True],
    ) -> Iterator[tuple[Any, ...]]: ...
    def iter_query(
        self,
        sql: str,
        params: Params | None = None,
        batch_size: int = 1000,
        *,
        as_tuples: bool = False,
    ) -> Iterator[Row] | Iterator[tuple[Any, ...]]:
        rows = self._query("iter_query", sql, params)
        if as_tuples:
            return iter([tuple(row.values()) for row in rows])
        return iter(rows)

    # ---- Arrow results (dbflow.testing.arrow_mock) -------------------------

    def _arrow(
        self, method: str, sql: str, params: Params | None, in_transaction: bool = False
    ) -> Any:
        """The scripted rows of a call as a ``pyarrow.Table``."""
        operation = method.removeprefix("transaction.")
        try:
            check_params(
                sql,
                self._sendable(method, params),
                database_name=self._name,
                dialect=self._dialect(),
            )
        except ParameterError as e:
            # The native check names only the operations it knows (others
            # as execute_query); the real Arrow reads name themselves.
            raise arrow_mock.renamed(e, method) from None
        require("pyarrow", operation)
        result, schema = self._respond(method, sql, params, in_transaction)
        rows = self._one_result(method, result)
        return arrow_mock.rows_to_table(rows, schema, operation)

    def fetch_arrow(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any:
        """The scripted rows as a ``pyarrow.Table`` (partition arguments are
        validated, and the answer is the same unpartitioned)."""
        arrow_mock.check_partitions(self._name, "fetch_arrow", partition_on, partitions)
        return self._arrow("fetch_arrow", sql, params)

    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = arrow_mock.BATCH_ROWS
    ) -> MockArrowBatches:
        """The scripted rows as ``pyarrow.RecordBatch`` es of at most
        `batch_rows` rows, with the Arrow C stream interface."""
        rows = arrow_mock.check_batch_rows(self._name, "iter_arrow", batch_rows)
        return MockArrowBatches(self._arrow("iter_arrow", sql, params), rows)

    def fetch_polars(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any:
        """The scripted rows as a ``polars.DataFrame``."""
        arrow_mock.check_partitions(self._name, "fetch_polars", partition_on, partitions)
        return to_polars(self._arrow("fetch_polars", sql, params))

    def fetch_pandas(
        self,
        sql: str,
        params: Params | None = None,
        *,
        dtype_backend: str = "numpy_nullable",
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any:
        """The scripted rows as a ``pandas.DataFrame`` (`dtype_backend` as
        for the real manager)."""
        arrow_mock.check_partitions(self._name, "fetch_pandas", partition_on, partitions)
        return to_pandas(self._arrow("fetch_pandas", sql, params), dtype_backend)

    def bulk_insert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any] | Sequence[Any]] | ArrowStream | ArrowArray,
        columns: Sequence[str] | None = None,
    ) -> int:
        """Record the rows (Arrow data as dict rows) and answer their count,
        or the scripted row count for ``"bulk_insert <table>"``."""
        if arrow_mock.is_arrow_data(rows):
            materialized = arrow_mock.arrow_rows(rows, self._name, columns)
        else:
            materialized = list(cast("Iterable[Any]", rows))
        result = self._answer("bulk_insert", f"bulk_insert {table}", materialized, False)
        return result if isinstance(result, int) else len(materialized)

    def transaction(self) -> MockTransaction:
        return MockTransaction(self)

    def execute_query_with_timeout(
        self, sql: str, params: Params | None = None, timeout: float | None = None
    ) -> list[Row]:
        return self._query("execute_query_with_timeout", sql, params)

    def execute_query_with_retry(
        self,
        sql: str,
        params: Params | None = None,
        *,
        attempts: int | None = None,
        min_delay: float | None = None,
        max_delay: float | None = None,
        idempotent: bool = False,
    ) -> list[Row]:
        return self._query("execute_query_with_retry", sql, params)

    def execute_query_safe(
        self, sql: str, params: Params | None = None, retry_on_failure: bool = True
    ) -> list[Row]:
        return self._query("execute_query_safe", sql, params)

    def execute_query_with_timing(self, sql: str, params: Params | None = None) -> dict[str, Any]:
        try:
            rows = self._query("execute_query_with_timing", sql, params)
        except Exception as e:
            return {
                "results": [],
                "execution_time_ms": 0.0,
                "row_count": 0,
                "status": "error",
                "error": str(e),
                "error_type": type(e).__name__,
            }
        return {
            "results": rows,
            "execution_time_ms": 0.0,
            "row_count": len(rows),
            "status": "success",
        }

    def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        self.calls.append(
            Call(
                "run_migrations",
                params={"target": target, "placeholders": placeholders, "dry_run": dry_run},
                database=self._name,
            )
        )
        if dry_run:
            return {
                "applied": list(self.migrations.pending),
                "current_version": self.migrations.current_version,
                "repeatable": [],
                "baselined": None,
                "dry_run": True,
                "statements": [],
            }
        applied, self.migrations.pending = list(self.migrations.pending), []
        if applied:
            self.migrations.current_version = applied[-1]
        return {"applied": applied, "current_version": self.migrations.current_version}

    def get_migration_status(self) -> dict[str, Any]:
        m = self.migrations
        return {
            "current_version": m.current_version,
            "pending_migrations": list(m.pending),
            "pending_details": [{"version": v, "description": "", "script": ""} for v in m.pending],
            "applied_migrations": [],
            "total_migrations": len(m.pending) + (1 if m.current_version else 0),
            "last_migration": None,
            "migrations_dir": None,
            "repeatable_migrations": [],
            "baseline_version": None,
            "read_only": m.read_only,
        }

    def baseline_migrations(
        self, version: str | int | float | None = None, description: str = "<< Flyway Baseline >>"
    ) -> dict[str, Any]:
        self.calls.append(
            Call("baseline_migrations", params={"version": version}, database=self._name)
        )
        label = f"V{str(version if version is not None else 1).lstrip('Vv')}"
        self.migrations.current_version = label
        return {"baseline_version": label, "description": description}

    def validate_migrations(self, *, out_of_order: bool = False) -> None:
        self.calls.append(Call("validate_migrations"))

    def rollback_migrations(self, target: str | int | float) -> list[str]:
        self.calls.append(Call("rollback_migrations", params={"target": target}))
        raise MigrationError(
            f"[{self._name}] rollback_migrations failed: a mock has no undo files",
            database=self._name,
            operation="rollback_migrations",
        )

    def repair_migrations(self) -> dict[str, int]:
        self.calls.append(Call("repair_migrations"))
        return {"removed_failed": 0, "realigned": 0}

    def _now(self) -> str:
        return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")

    def health_check(self) -> dict[str, Any]:
        healthy = self.health_status != "unhealthy"
        m = self.migrations
        return {
            "database_name": self._name,
            "database_type": self._type,
            "status": self.health_status,
            "connection": healthy,
            "query_test": healthy,
            "migration_status": "read_only"
            if m.read_only
            else {"current_version": m.current_version, "pending_migrations": list(m.pending)},
            "response_time_ms": 1.0,
            "error": None
            if self.health_status == "healthy"
            else f"mock status {self.health_status}",
            "timestamp": self._now(),
        }

    def get_pool_status(self) -> dict[str, Any]:
        return {
            "database_name": self._name,
            "database_type": self._type,
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "checked_in": 1,
            "checked_out": 0,
            "overflow": 0,
            "invalid": 0,
            "waiting": 0,
            "utilization": 0.0,
            "connections_opened": 1,
            "connections_closed": 0,
            "users": 1,
            "timestamp": self._now(),
        }

    def get_metrics(self) -> dict[str, Any]:
        queries = len([c for c in self.calls if c.sql is not None])
        latency = {"count": queries, "p50": 0.0, "p95": 0.0, "p99": 0.0}
        return {
            "database_name": self._name,
            "queries": queries,
            "rows_returned": 0,
            "errors": {},
            "errors_total": 0,
            "retries": 0,
            "timeouts": 0,
            "connections_opened": 1,
            "connections_closed": 0,
            "query_latency_ms": latency,
            "pool_acquire_ms": dict(latency),
            "timestamp": self._now(),
        }

    def ping(self) -> None:
        self.calls.append(Call("ping"))

    def close(self) -> None:
        self.closed = True

    def dispose(self) -> None:
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> Literal[False]:
        self.close()
        return False

    def __repr__(self) -> str:
        return f"MockDatabaseManager({self._name!r}, calls={len(self.calls)})"


class _NamedMock(MockDatabaseManager):
    """A view of a mock under another database name (``named``)."""

    def __init__(self, base: MockDatabaseManager, database_name: str) -> None:
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_name", database_name)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(object.__getattribute__(self, "_base"), attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_base"), attribute, value)


class MockTransaction:
    """``db.transaction()`` of a mock: records commit or rollback."""

    def __init__(self, db: MockDatabaseManager) -> None:
        self._db = db
        self.active = False

    def __enter__(self) -> Self:
        self.active = True
        self._db.calls.append(Call("begin"))
        return self

    def __exit__(self, exc_type: Any = None, _exc: Any = None, _tb: Any = None) -> Literal[False]:
        if self.active:
            self._db.calls.append(Call("rollback" if exc_type is not None else "commit"))
            self.active = False
        return False

    def execute_query(self, sql: str, params: Params | None = None) -> list[Row]:
        return self._db._query("transaction.execute_query", sql, params, in_transaction=True)

    def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        rows = list(seq_of_params)
        for index, row in enumerate(rows):
            check_params(
                sql,
                self._db._sendable("transaction.execute_many", row),
                database_name=self._db.database_name,
                operation="transaction.execute_many",
                row=index,
            )
        result = self._db._answer("transaction.execute_many", sql, rows, True)
        return result if isinstance(result, int) else len(rows)

    def execute_query_sets(self, sql: str, params: Params | None = None) -> list[list[Row]]:
        """The scripted result sets, recorded as ``transaction.execute_query_sets``."""
        return self._db._query_sets("transaction.execute_query_sets", sql, params, True)

    def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> ProcedureResult:
        """The scripted ``ProcedureResult``, recorded as ``transaction.call_procedure``."""
        return self._db._procedure("transaction.call_procedure", name, params, output, True)

    def fetch_arrow(self, sql: str, params: Params | None = None) -> Any:
        return self._db._arrow("transaction.fetch_arrow", sql, params, in_transaction=True)

    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = arrow_mock.BATCH_ROWS
    ) -> MockArrowBatches:
        rows = arrow_mock.check_batch_rows(
            self._db.database_name, "transaction.iter_arrow", batch_rows
        )
        table = self._db._arrow("transaction.iter_arrow", sql, params, in_transaction=True)
        return MockArrowBatches(table, rows)

    def fetch_polars(self, sql: str, params: Params | None = None) -> Any:
        return to_polars(
            self._db._arrow("transaction.fetch_polars", sql, params, in_transaction=True)
        )

    def fetch_pandas(
        self, sql: str, params: Params | None = None, *, dtype_backend: str = "numpy_nullable"
    ) -> Any:
        table = self._db._arrow("transaction.fetch_pandas", sql, params, in_transaction=True)
        return to_pandas(table, dtype_backend)

    def commit(self) -> None:
        self._db.calls.append(Call("commit"))
        self.active = False

    def rollback(self) -> None:
        self._db.calls.append(Call("rollback"))
        self.active = False

    def savepoint(self) -> MockSavepoint:
        return MockSavepoint(self._db)


class MockSavepoint:
    def __init__(self, db: MockDatabaseManager) -> None:
        self._db = db

    def __enter__(self) -> Self:
        self._db.calls.append(Call("savepoint"))
        return self

    def __exit__(self, exc_type: Any = None, _exc: Any = None, _tb: Any = None) -> Literal[False]:
        self._db.calls.append(
            Call("rollback_to_savepoint" if exc_type is not None else "release_savepoint")
        )
        return False
