"""The interface flow code relies on: ``DatabaseManagerProtocol``, shared by
the real manager and :class:`dbflow.testing.MockDatabaseManager`, and
``AsyncDatabaseManagerProtocol``, the same members as ``AsyncDatabaseManager``
has them (coroutines where it does I/O), shared with
:class:`dbflow.testing.AsyncMockDatabaseManager`. The test command
type-checks all four against them (``tests_py/protocol_check.py``), and
``tests_py/test_api_parity.py`` fails when a public member of one manager is
missing from the other, from a mock or from these protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping, Sequence
from os import PathLike
from typing import Any, Literal, Protocol, overload, runtime_checkable

from typing_extensions import Self

from dbflow._procedures import ProcedureResult

Params = Mapping[str, Any]
Row = dict[str, Any]


@runtime_checkable
class ArrowStreamExporter(Protocol):
    """Data exporting the Arrow C stream interface: a pyarrow Table or
    RecordBatchReader, a Polars or pandas DataFrame, ``iter_arrow``'s result."""

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...


@runtime_checkable
class ArrowArrayExporter(Protocol):
    """Data exporting the Arrow C data interface: a pyarrow RecordBatch."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> Any: ...


ArrowData = ArrowStreamExporter | ArrowArrayExporter


class ArrowBatchesProtocol(Protocol):
    """``iter_arrow``'s result: ``pyarrow.RecordBatch``es as they arrive, or
    the rest of them as one Arrow C stream."""

    def __iter__(self) -> Iterator[Any]: ...
    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...
    @property
    def column_names(self) -> list[str]: ...
    def close(self) -> None: ...


class AsyncArrowBatchesProtocol(Protocol):
    """``iter_arrow``'s result on an async manager: ``async for`` batches."""

    def __aiter__(self) -> AsyncIterator[Any]: ...
    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...
    @property
    def column_names(self) -> list[str]: ...
    def aclose(self) -> Awaitable[None]: ...


@runtime_checkable
class SavepointProtocol(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, exc_type: Any = None, _exc: Any = None, _tb: Any = None) -> bool: ...


@runtime_checkable
class TransactionProtocol(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, exc_type: Any = None, _exc: Any = None, _tb: Any = None) -> bool: ...
    def execute_query(self, sql: str, params: Params | None = None) -> list[Row]: ...
    def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> int: ...
    def execute_query_sets(self, sql: str, params: Params | None = None) -> list[list[Row]]: ...
    def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> ProcedureResult: ...
    def fetch_arrow(self, sql: str, params: Params | None = None) -> Any: ...
    def fetch_polars(self, sql: str, params: Params | None = None) -> Any: ...
    def fetch_pandas(
        self, sql: str, params: Params | None = None, *, dtype_backend: str = "numpy_nullable"
    ) -> Any: ...
    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = 65536
    ) -> ArrowBatchesProtocol: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def savepoint(self) -> SavepointProtocol: ...


@runtime_checkable
class DatabaseManagerProtocol(Protocol):
    @property
    def database_name(self) -> str: ...
    @property
    def database_type(self) -> str: ...
    @property
    def migration_artifact(self) -> bool: ...
    @property
    def environment(self) -> str: ...
    @property
    def flow_name(self) -> str | None: ...
    @property
    def connection_string(self) -> str: ...
    @property
    def migrations_dir(self) -> PathLike[str] | None: ...
    @overload
    def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[False] = False
    ) -> list[Row]: ...
    @overload
    def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[True]
    ) -> list[tuple[Any, ...]]: ...
    def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> int: ...
    def execute_transaction(
        self, queries: Sequence[tuple[str, Params | None] | tuple[str] | str]
    ) -> list[list[Row]]: ...
    def execute_query_sets(self, sql: str, params: Params | None = None) -> list[list[Row]]: ...
    def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> ProcedureResult: ...
    def transaction(self) -> TransactionProtocol: ...
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
    def fetch_arrow(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any: ...
    def fetch_polars(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any: ...
    def fetch_pandas(
        self,
        sql: str,
        params: Params | None = None,
        *,
        dtype_backend: str = "numpy_nullable",
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any: ...
    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = 65536
    ) -> ArrowBatchesProtocol: ...
    def bulk_insert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any] | Sequence[Any]] | ArrowData,
        columns: Sequence[str] | None = None,
    ) -> int: ...
    def execute_query_with_timeout(
        self, sql: str, params: Params | None = None, timeout: float | None = None
    ) -> list[Row]: ...
    def execute_query_with_retry(
        self,
        sql: str,
        params: Params | None = None,
        *,
        attempts: int | None = None,
        min_delay: float | None = None,
        max_delay: float | None = None,
        idempotent: bool = False,
    ) -> list[Row]: ...
    def execute_query_safe(
        self, sql: str, params: Params | None = None, retry_on_failure: bool = True
    ) -> list[Row]: ...
    def execute_query_with_timing(
        self, sql: str, params: Params | None = None
    ) -> dict[str, Any]: ...
    def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]: ...
    def baseline_migrations(
        self, version: str | int | float | None = None, description: str = "<< Flyway Baseline >>"
    ) -> dict[str, Any]: ...
    def get_migration_status(self) -> dict[str, Any]: ...
    def validate_migrations(self, *, out_of_order: bool = False) -> None: ...
    def rollback_migrations(self, target: str | int | float) -> list[str]: ...
    def repair_migrations(self) -> dict[str, int]: ...
    def health_check(self) -> dict[str, Any]: ...
    def get_pool_status(self) -> dict[str, Any]: ...
    def get_metrics(self) -> dict[str, Any]: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...
    def dispose(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *_exc: object) -> bool: ...


@runtime_checkable
class AsyncSavepointProtocol(Protocol):
    def __aenter__(self) -> Awaitable[Any]: ...
    def __aexit__(
        self, exc_type: Any = None, _exc: Any = None, _tb: Any = None
    ) -> Awaitable[bool]: ...


@runtime_checkable
class AsyncTransactionProtocol(Protocol):
    def __aenter__(self) -> Awaitable[Any]: ...
    def __aexit__(
        self, exc_type: Any = None, _exc: Any = None, _tb: Any = None
    ) -> Awaitable[bool]: ...
    def execute_query(self, sql: str, params: Params | None = None) -> Awaitable[list[Row]]: ...
    def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> Awaitable[int]: ...
    def execute_query_sets(
        self, sql: str, params: Params | None = None
    ) -> Awaitable[list[list[Row]]]: ...
    def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> Awaitable[ProcedureResult]: ...
    def fetch_arrow(self, sql: str, params: Params | None = None) -> Awaitable[Any]: ...
    def fetch_polars(self, sql: str, params: Params | None = None) -> Awaitable[Any]: ...
    def fetch_pandas(
        self, sql: str, params: Params | None = None, *, dtype_backend: str = "numpy_nullable"
    ) -> Awaitable[Any]: ...
    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = 65536
    ) -> AsyncArrowBatchesProtocol: ...
    def commit(self) -> Awaitable[None]: ...
    def rollback(self) -> Awaitable[None]: ...
    def savepoint(self) -> AsyncSavepointProtocol: ...
    @property
    def active(self) -> bool: ...


@runtime_checkable
class AsyncDatabaseManagerProtocol(Protocol):
    """Every member of ``DatabaseManagerProtocol``: coroutines where the
    manager does I/O; ``transaction()`` and ``iter_query()`` are used with
    ``async with`` and ``async for``; the pool and metrics readers, ``close``
    and ``dispose`` are plain."""

    @property
    def database_name(self) -> str: ...
    @property
    def database_type(self) -> str: ...
    @property
    def migration_artifact(self) -> bool: ...
    @property
    def environment(self) -> str: ...
    @property
    def flow_name(self) -> str | None: ...
    @property
    def connection_string(self) -> str: ...
    @property
    def migrations_dir(self) -> PathLike[str] | None: ...
    @overload
    async def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[False] = False
    ) -> list[Row]: ...
    @overload
    async def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[True]
    ) -> list[tuple[Any, ...]]: ...
    async def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> int: ...
    async def execute_transaction(
        self, queries: Sequence[tuple[str, Params | None] | tuple[str] | str]
    ) -> list[list[Row]]: ...
    async def execute_query_sets(
        self, sql: str, params: Params | None = None
    ) -> list[list[Row]]: ...
    async def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> ProcedureResult: ...
    def transaction(self) -> AsyncTransactionProtocol: ...
    @overload
    def iter_query(
        self,
        sql: str,
        params: Params | None = None,
        batch_size: int = 1000,
        *,
        as_tuples: Literal[False] = False,
    ) -> AsyncIterator[Row]: ...
    @overload
    def iter_query(
        self,
        sql: str,
        params: Params | None = None,
        batch_size: int = 1000,
        *,
        as_tuples: Literal[True],
    ) -> AsyncIterator[tuple[Any, ...]]: ...
    async def fetch_arrow(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any: ...
    async def fetch_polars(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any: ...
    async def fetch_pandas(
        self,
        sql: str,
        params: Params | None = None,
        *,
        dtype_backend: str = "numpy_nullable",
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any: ...
    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = 65536
    ) -> AsyncArrowBatchesProtocol: ...
    async def bulk_insert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any] | Sequence[Any]] | ArrowData,
        columns: Sequence[str] | None = None,
    ) -> int: ...
    async def execute_query_with_timeout(
        self, sql: str, params: Params | None = None, timeout: float | None = None
    ) -> list[Row]: ...
    async def execute_query_with_retry(
        self,
        sql: str,
        params: Params | None = None,
        *,
        attempts: int | None = None,
        min_delay: float | None = None,
        max_delay: float | None = None,
        idempotent: bool = False,
    ) -> list[Row]: ...
    async def execute_query_safe(
        self, sql: str, params: Params | None = None, retry_on_failure: bool = True
    ) -> list[Row]: ...
    async def execute_query_with_timing(
        self, sql: str, params: Params | None = None
    ) -> dict[str, Any]: ...
    async def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]: ...
    async def baseline_migrations(
        self, version: str | int | float | None = None, description: str = "<< Flyway Baseline >>"
    ) -> dict[str, Any]: ...
    async def get_migration_status(self) -> dict[str, Any]: ...
    async def validate_migrations(self, *, out_of_order: bool = False) -> None: ...
    async def rollback_migrations(self, target: str | int | float) -> list[str]: ...
    async def repair_migrations(self) -> dict[str, int]: ...
    async def health_check(self) -> dict[str, Any]: ...
    async def ping(self) -> None: ...
    def get_pool_status(self) -> dict[str, Any]: ...
    def get_metrics(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def dispose(self) -> None: ...
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(self, *_exc: object) -> Awaitable[bool]: ...
