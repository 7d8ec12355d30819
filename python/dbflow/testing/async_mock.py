"""``AsyncMockDatabaseManager``: the asyncio face of a sync test double,
with every member ``AsyncDatabaseManager`` has (see
``dbflow.AsyncDatabaseManagerProtocol``), answering from the double."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from os import PathLike
from typing import Any, Literal, overload

from typing_extensions import Self

from dbflow._procedures import ProcedureResult
from dbflow.protocol import DatabaseManagerProtocol
from dbflow.testing.arrow_mock import BATCH_ROWS, ArrowArray, ArrowStream, AsyncMockArrowBatches

Params = Mapping[str, Any]
Row = dict[str, Any]


class AsyncMockDatabaseManager:
    """The asyncio face of a sync test double (a ``MockDatabaseManager``):
    the same script, the same recorded calls, with ``AsyncDatabaseManager``'s
    members — coroutines where it does I/O, ``async with``, ``async for`` and
    async transactions. ``patch_databases`` hands one out when flow code asks
    for ``AsyncDatabaseManager(name)``; ``.sync`` is the double underneath.

    Every member of the real async manager is written out here (a test,
    ``tests_py/test_api_parity.py``, keeps it so); attribute access falls
    through to the double only for its own extras (``add_result``,
    ``calls``, ``assert_called_with_sql``, ...)."""

    def __init__(self, sync: DatabaseManagerProtocol) -> None:
        self.sync = sync

    def __getattr__(self, name: str) -> Any:
        # The double's own scripting and inspection helpers.
        return getattr(self.sync, name)

    # ---- what the manager is ---------------------------------------------

    @property
    def database_name(self) -> str:
        return self.sync.database_name

    @property
    def database_type(self) -> str:
        return self.sync.database_type

    @property
    def migration_artifact(self) -> bool:
        return self.sync.migration_artifact

    @property
    def environment(self) -> str:
        return self.sync.environment

    @property
    def flow_name(self) -> str | None:
        return self.sync.flow_name

    @property
    def connection_string(self) -> str:
        return self.sync.connection_string

    @property
    def migrations_dir(self) -> PathLike[str] | None:
        return self.sync.migrations_dir

    # ---- queries ---------------------------------------------------------

    @overload
    async def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[False] = False
    ) -> list[Row]: ...
    @overload
    async def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: Literal[True]
    ) -> list[tuple[Any, ...]]: ...
    async def execute_query(
        self, sql: str, params: Params | None = None, *, as_tuples: bool = False
    ) -> list[Row] | list[tuple[Any, ...]]:
        if as_tuples:
            return list(self.sync.execute_query(sql, params, as_tuples=True))
        return list(self.sync.execute_query(sql, params))

    async def execute_query_with_timeout(
        self, sql: str, params: Params | None = None, timeout: float | None = None
    ) -> list[Row]:
        return list(self.sync.execute_query_with_timeout(sql, params, timeout))

    async def execute_query_with_retry(
        self,
        sql: str,
        params: Params | None = None,
        *,
        attempts: int | None = None,
        min_delay: float | None = None,
        max_delay: float | None = None,
        idempotent: bool = False,
    ) -> list[Row]:
        return list(
            self.sync.execute_query_with_retry(
                sql,
                params,
                attempts=attempts,
                min_delay=min_delay,
                max_delay=max_delay,
                idempotent=idempotent,
            )
        )

    async def execute_query_safe(
        self, sql: str, params: Params | None = None, retry_on_failure: bool = True
    ) -> list[Row]:
        return list(self.sync.execute_query_safe(sql, params, retry_on_failure))

    async def execute_query_with_timing(
        self, sql: str, params: Params | None = None
    ) -> dict[str, Any]:
        return dict(self.sync.execute_query_with_timing(sql, params))

    async def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        return int(self.sync.execute_many(sql, seq_of_params))

    async def execute_transaction(
        self, queries: Sequence[tuple[str, Params | None] | tuple[str] | str]
    ) -> list[list[Row]]:
        return list(self.sync.execute_transaction(queries))

    async def execute_query_sets(self, sql: str, params: Params | None = None) -> list[list[Row]]:
        return list(self.sync.execute_query_sets(sql, params))

    async def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> ProcedureResult:
        return self.sync.call_procedure(name, params, output=output)

    async def bulk_insert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any] | Sequence[Any]] | ArrowStream | ArrowArray,
        columns: Sequence[str] | None = None,
    ) -> int:
        return int(self._arrow_double.bulk_insert(table, rows, columns))

    # ---- Arrow results ---------------------------------------------------

    @property
    def _arrow_double(self) -> Any:
        # The double untyped: DatabaseManagerProtocol declares the Arrow
        # members only once the real managers have them.
        return self.sync

    async def fetch_arrow(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any:
        return self._arrow_double.fetch_arrow(
            sql, params, partition_on=partition_on, partitions=partitions
        )

    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = BATCH_ROWS
    ) -> AsyncMockArrowBatches:
        return AsyncMockArrowBatches(
            self._arrow_double.iter_arrow(sql, params, batch_rows=batch_rows)
        )

    async def fetch_polars(
        self,
        sql: str,
        params: Params | None = None,
        *,
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any:
        return self._arrow_double.fetch_polars(
            sql, params, partition_on=partition_on, partitions=partitions
        )

    async def fetch_pandas(
        self,
        sql: str,
        params: Params | None = None,
        *,
        dtype_backend: str = "numpy_nullable",
        partition_on: str | None = None,
        partitions: int | None = None,
    ) -> Any:
        return self._arrow_double.fetch_pandas(
            sql,
            params,
            dtype_backend=dtype_backend,
            partition_on=partition_on,
            partitions=partitions,
        )

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
    async def iter_query(
        self,
        sql: str,
        params: Params | None = None,
        batch_size: int = 1000,
        *,
        as_tuples: bool = False,
    ) -> AsyncIterator[Any]:
        rows: Iterable[Any] = (
            self.sync.iter_query(sql, params, batch_size, as_tuples=True)
            if as_tuples
            else self.sync.iter_query(sql, params, batch_size)
        )
        for row in rows:
            yield row

    def transaction(self) -> _AsyncMockTransaction:
        return _AsyncMockTransaction(self.sync.transaction())

    # ---- migrations, health ----------------------------------------------

    async def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return self.sync.run_migrations(
            target, out_of_order=out_of_order, placeholders=placeholders, dry_run=dry_run
        )

    async def baseline_migrations(
        self, version: str | int | float | None = None, description: str = "<< Flyway Baseline >>"
    ) -> dict[str, Any]:
        return dict(self.sync.baseline_migrations(version, description))

    async def get_migration_status(self) -> dict[str, Any]:
        return dict(self.sync.get_migration_status())

    async def validate_migrations(self, *, out_of_order: bool = False) -> None:
        self.sync.validate_migrations(out_of_order=out_of_order)

    async def rollback_migrations(self, target: str | int | float) -> list[str]:
        return list(self.sync.rollback_migrations(target))

    async def repair_migrations(self) -> dict[str, int]:
        return dict(self.sync.repair_migrations())

    async def health_check(self) -> dict[str, Any]:
        return dict(self.sync.health_check())

    async def ping(self) -> None:
        self.sync.ping()

    # ---- no I/O ----------------------------------------------------------

    def get_pool_status(self) -> dict[str, Any]:
        return self.sync.get_pool_status()

    def get_metrics(self) -> dict[str, Any]:
        return self.sync.get_metrics()

    def close(self) -> None:
        self.sync.close()

    def dispose(self) -> None:
        self.sync.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> Literal[False]:
        self.sync.close()
        return False

    def __repr__(self) -> str:
        return f"AsyncMockDatabaseManager({self.sync!r})"


class _AsyncMockTransaction:
    def __init__(self, sync: Any) -> None:
        self.sync = sync

    async def __aenter__(self) -> Self:
        self.sync.__enter__()
        return self

    async def __aexit__(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> bool:
        return bool(self.sync.__exit__(exc_type, exc, tb))

    async def execute_query(self, sql: str, params: Params | None = None) -> list[Row]:
        return list(self.sync.execute_query(sql, params))

    async def execute_many(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        return int(self.sync.execute_many(sql, seq_of_params))

    async def execute_query_sets(self, sql: str, params: Params | None = None) -> list[list[Row]]:
        return list(self.sync.execute_query_sets(sql, params))

    async def call_procedure(
        self,
        name: str,
        params: Params | None = None,
        *,
        output: Mapping[str, str] | None = None,
    ) -> ProcedureResult:
        result: ProcedureResult = self.sync.call_procedure(name, params, output=output)
        return result

    async def fetch_arrow(self, sql: str, params: Params | None = None) -> Any:
        return self.sync.fetch_arrow(sql, params)

    def iter_arrow(
        self, sql: str, params: Params | None = None, *, batch_rows: int = BATCH_ROWS
    ) -> AsyncMockArrowBatches:
        return AsyncMockArrowBatches(self.sync.iter_arrow(sql, params, batch_rows=batch_rows))

    async def fetch_polars(self, sql: str, params: Params | None = None) -> Any:
        return self.sync.fetch_polars(sql, params)

    async def fetch_pandas(
        self, sql: str, params: Params | None = None, *, dtype_backend: str = "numpy_nullable"
    ) -> Any:
        return self.sync.fetch_pandas(sql, params, dtype_backend=dtype_backend)

    async def commit(self) -> None:
        self.sync.commit()

    async def rollback(self) -> None:
        self.sync.rollback()

    def savepoint(self) -> _AsyncMockSavepoint:
        return _AsyncMockSavepoint(self.sync.savepoint())

    @property
    def active(self) -> bool:
        return bool(self.sync.active)


class _AsyncMockSavepoint:
    def __init__(self, sync: Any) -> None:
        self.sync = sync

    async def __aenter__(self) -> Self:
        self.sync.__enter__()
        return self

    async def __aexit__(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> bool:
        return bool(self.sync.__exit__(exc_type, exc, tb))


def as_async(double: Any) -> Any:
    """``double`` as ``AsyncDatabaseManager`` flow code uses it: an async
    double as is, a sync one wrapped."""
    if inspect.iscoroutinefunction(getattr(double, "execute_query", None)):
        return double
    return AsyncMockDatabaseManager(double)
