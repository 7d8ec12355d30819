"""dbflow's exception hierarchy, rooted at :class:`DatabaseError`.

Every error carries the database and the operation that failed, and never a
password. Query errors carry PostgreSQL's SQLSTATE (``sqlstate``) or SQL
Server's error number (``error_number``). ``may_have_run`` is true when the
request had reached the server before the failure (a connection lost
mid-answer): the statement may have taken effect, and dbflow never sends it
again by itself. ``messages`` holds the server's messages up to the
failure, in order (SQL Server ``PRINT``/low-severity ``RAISERROR``,
PostgreSQL ``RAISE NOTICE``...), e.g. the PRINTs a procedure made before
its ``RAISERROR``; empty when there were none. A failed ``call_procedure``
also carries ``result``: the :class:`~dbflow.ProcedureResult` of what the
server sent all the same (result sets before the error, and the OUTPUT
values and return code when the procedure returned after raising); ``None``
elsewhere. All exceptions pickle, so
they cross process boundaries (Prefect task results, multiprocessing)
intact.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ChecksumMismatchError",
    "ConfigurationError",
    "DatabaseConnectionError",
    "DatabaseError",
    "IntegrityError",
    "MigrationError",
    "MultipleResultSetsError",
    "ParameterError",
    "PoolTimeoutError",
    "QueryError",
    "QueryTimeoutError",
    "TransactionError",
]


class DatabaseError(Exception):
    """Root of every dbflow error: ``message``, ``database``, ``operation``,
    ``sqlstate`` (PostgreSQL), ``error_number`` (SQL Server),
    ``may_have_run``, ``messages``: the server's messages up to the
    failure (the PRINTs before a RAISERROR), in order, and ``result``: for
    a failed ``call_procedure``, the ``ProcedureResult`` the server sent
    before and after the error (else ``None``)."""

    def __init__(
        self,
        message: str,
        *,
        database: str | None = None,
        operation: str | None = None,
        sqlstate: str | None = None,
        error_number: int | None = None,
        may_have_run: bool = False,
        messages: list[str] | None = None,
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.database = database
        self.operation = operation
        self.sqlstate = sqlstate
        self.error_number = error_number
        self.may_have_run = may_have_run
        self.messages: list[str] = list(messages) if messages is not None else []
        #: A failed call_procedure's ProcedureResult (what the server sent).
        self.result: Any = result

    def _context(self) -> dict[str, Any]:
        """The keywords that rebuild this error (pickling)."""
        return {
            "database": self.database,
            "operation": self.operation,
            "sqlstate": self.sqlstate,
            "error_number": self.error_number,
            "may_have_run": self.may_have_run,
            "messages": list(self.messages),
            "result": self.result,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._context()))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[DatabaseError], message: str, attrs: dict[str, Any]) -> DatabaseError:
    return cls(message, **attrs)


class ConfigurationError(DatabaseError):
    """A setting is missing, malformed or contradictory; the message names the key."""


class DatabaseConnectionError(DatabaseError, ConnectionError):
    """The server could not be reached, refused the login, or dropped the connection."""


class QueryError(DatabaseError):
    """The server rejected a statement (``sqlstate`` / ``error_number`` say why)."""


class MultipleResultSetsError(QueryError):
    """The statement produced more than one result set (``result_sets`` says
    how many), and ``execute_query`` returns one. Use
    ``execute_query_sets`` for every result set of a batch, or
    ``call_procedure`` for a procedure's result sets, OUTPUT parameters and
    return value."""

    def __init__(
        self,
        message: str,
        *,
        database: str | None = None,
        operation: str | None = None,
        sqlstate: str | None = None,
        error_number: int | None = None,
        may_have_run: bool = False,
        messages: list[str] | None = None,
        result: Any = None,
        result_sets: int = 0,
    ) -> None:
        super().__init__(
            message,
            database=database,
            operation=operation,
            sqlstate=sqlstate,
            error_number=error_number,
            may_have_run=may_have_run,
            messages=messages,
            result=result,
        )
        self.result_sets = result_sets

    def _context(self) -> dict[str, Any]:
        return {**super()._context(), "result_sets": self.result_sets}


class IntegrityError(QueryError):
    """A constraint was violated (unique, foreign key, not null, check)."""


class ParameterError(QueryError, ValueError):
    """A ``:name`` parameter is missing or its value cannot be sent."""


class QueryTimeoutError(QueryError, TimeoutError):
    """The statement passed its deadline and the server stopped it."""


class PoolTimeoutError(DatabaseError, TimeoutError):
    """No pooled connection became free within ``pool_timeout``."""


class TransactionError(DatabaseError):
    """A transaction could not be committed, or was used after it ended."""


class MigrationError(DatabaseError):
    """A migration file is invalid or failed to apply."""


class ChecksumMismatchError(MigrationError):
    """An applied migration's file was edited afterwards."""
