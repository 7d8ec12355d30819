"""Prefect's ``DatabaseBlock`` interface for ``DatabaseCredentials``, so a
flow written for prefect-sqlalchemy's ``SqlAlchemyConnector`` runs on dbflow
by swapping the block: ``fetch_one``, ``fetch_many``, ``fetch_all``,
``execute``, ``execute_many``, their ``a``-prefixed async twins, and use as a
(async) context manager.

Paging follows the interface: repeated ``fetch_one``/``fetch_many`` calls with
the same operation and parameters continue one result, read from the server
batch by batch (``iter_query``). A result is never served stale: the call
that finds it exhausted returns ``None``/``[]`` and closes it, so the next
call runs the statement again and sees the data as it is then;
``reset_cursors()`` closes every open result at once. ``fetch_all``,
``execute`` and ``execute_many`` always run afresh. An open result holds one
pooled connection until it is exhausted, reset, or the block is closed.
Rows are tuples in column order, as SQLAlchemy rows index.
"""

from __future__ import annotations

from typing import Any, cast

_PAGE = 500


def _key(operation: str, parameters: dict[str, Any] | None) -> str:
    items = sorted((parameters or {}).items())
    return f"{operation}\x00{items!r}"


class _Result:
    """One open result: rows pulled from the server as they are asked for."""

    def __init__(self, rows: Any) -> None:
        self.rows = rows
        self.done = False

    def take(self, size: int) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        while len(out) < size and not self.done:
            try:
                out.append(next(self.rows))
            except StopIteration:
                self.done = True
        return out

    def close(self) -> None:
        close = getattr(self.rows, "close", None)
        if close is not None:
            close()


class _AsyncResult(_Result):
    """`_Result` over an async row iterator."""

    async def atake(self, size: int) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        while len(out) < size and not self.done:
            try:
                out.append(await self.rows.__anext__())
            except StopAsyncIteration:
                self.done = True
        return out


class DatabaseBlockMixin:
    """Mixed into ``DatabaseCredentials``: the managers and open results
    live on the block instance (never saved with it)."""

    def _dbflow_name(self) -> str:
        name = getattr(self, "database_name", None) or getattr(self, "_block_document_name", None)
        return str(name or "database")

    def _manager(self) -> Any:
        from dbflow import DatabaseManager

        state = self._state()
        if state.get("sync") is None:
            state["sync"] = DatabaseManager(self._dbflow_name(), credentials=self)
        return state["sync"]

    def _amanager(self) -> Any:
        from dbflow import AsyncDatabaseManager

        state = self._state()
        if state.get("async") is None:
            state["async"] = AsyncDatabaseManager(self._dbflow_name(), credentials=self)
        return state["async"]

    def __getstate__(self) -> dict[str, Any]:
        # Open results and managers belong to this process: a pickled block
        # (a task argument on Dask or Ray) travels without them.
        state = cast(dict[str, Any], super().__getstate__())
        fields = dict(state.get("__dict__", {}))
        fields.pop("_dbflow_state", None)
        return {**state, "__dict__": fields}

    def _state(self) -> dict[str, Any]:
        # A plain attribute outside pydantic's fields: not saved, not pickled.
        state: dict[str, Any] | None = self.__dict__.get("_dbflow_state")
        if state is None:
            state = {"results": {}}
            object.__setattr__(self, "_dbflow_state", state)
        return state

    def _next(
        self, operation: str, parameters: dict[str, Any] | None, size: int
    ) -> list[tuple[Any, ...]]:
        results: dict[str, _Result] = self._state()["results"]
        key = _key(operation, parameters)
        result = results.get(key)
        if result is None:
            rows = self._manager().iter_query(
                operation, parameters, batch_size=max(size, _PAGE), as_tuples=True
            )
            result = results[key] = _Result(rows)
        page = result.take(size)
        if not page:
            # Exhausted: closed, so the next call sees the data afresh.
            result.close()
            del results[key]
        return page

    # ---- the DatabaseBlock interface -------------------------------------

    def fetch_one(
        self, operation: str, parameters: dict[str, Any] | None = None, **_: Any
    ) -> tuple[Any, ...] | None:
        """The next row of `operation` (run on the first call), or None at the end."""
        page = self._next(operation, parameters, 1)
        return page[0] if page else None

    def fetch_many(
        self,
        operation: str,
        parameters: dict[str, Any] | None = None,
        size: int | None = None,
        **_: Any,
    ) -> list[tuple[Any, ...]]:
        """The next `size` rows (default 1), or [] at the end."""
        return self._next(operation, parameters, size or 1)

    def fetch_all(
        self, operation: str, parameters: dict[str, Any] | None = None, **_: Any
    ) -> list[tuple[Any, ...]]:
        """Every row, from a fresh run of `operation`."""
        return list(self._manager().execute_query(operation, parameters, as_tuples=True))

    def execute(self, operation: str, parameters: dict[str, Any] | None = None, **_: Any) -> None:
        """Run `operation` (a statement, or a batch with any number of
        result sets, all read and discarded) and commit."""
        self._manager().execute_query_sets(operation, parameters)

    def call_procedure(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        output: dict[str, str] | None = None,
    ) -> Any:
        """``DatabaseManager.call_procedure`` on this block's database: a
        ``ProcedureResult`` (result sets, OUTPUT values, return code,
        rowcounts, the server's messages)."""
        return self._manager().call_procedure(name, params, output=output)

    def execute_many(
        self, operation: str, seq_of_parameters: list[dict[str, Any]], **_: Any
    ) -> None:
        """Run `operation` for each parameter set, in one transaction."""
        self._manager().execute_many(operation, seq_of_parameters)

    def reset_cursors(self) -> None:
        """Close every open result; the next fetch runs its statement again."""
        results: dict[str, _Result] = self._state()["results"]
        for result in results.values():
            result.close()
        results.clear()

    def close(self) -> None:
        """Close open results and release the managers."""
        self.reset_cursors()
        state = self._state()
        for kind in ("sync", "async"):
            manager = state.pop(kind, None)
            if manager is not None:
                manager.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # ---- async twins -------------------------------------------------------

    async def afetch_one(
        self, operation: str, parameters: dict[str, Any] | None = None, **_: Any
    ) -> tuple[Any, ...] | None:
        page = await self._anext(operation, parameters, 1)
        return page[0] if page else None

    async def afetch_many(
        self,
        operation: str,
        parameters: dict[str, Any] | None = None,
        size: int | None = None,
        **_: Any,
    ) -> list[tuple[Any, ...]]:
        return await self._anext(operation, parameters, size or 1)

    async def afetch_all(
        self, operation: str, parameters: dict[str, Any] | None = None, **_: Any
    ) -> list[tuple[Any, ...]]:
        rows = await self._amanager().execute_query(operation, parameters, as_tuples=True)
        return list(rows)

    async def aexecute(
        self, operation: str, parameters: dict[str, Any] | None = None, **_: Any
    ) -> None:
        await self._amanager().execute_query_sets(operation, parameters)

    async def acall_procedure(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        output: dict[str, str] | None = None,
    ) -> Any:
        """``call_procedure`` for asyncio."""
        return await self._amanager().call_procedure(name, params, output=output)

    async def aexecute_many(
        self, operation: str, seq_of_parameters: list[dict[str, Any]], **_: Any
    ) -> None:
        await self._amanager().execute_many(operation, seq_of_parameters)

    async def _anext(
        self, operation: str, parameters: dict[str, Any] | None, size: int
    ) -> list[tuple[Any, ...]]:
        results: dict[str, Any] = self._state()["results"]
        key = "async\x00" + _key(operation, parameters)
        result = results.get(key)
        if result is None:
            rows = self._amanager().iter_query(
                operation, parameters, batch_size=max(size, _PAGE), as_tuples=True
            )
            result = results[key] = _AsyncResult(rows)
        page = await result.atake(size)
        if not page:
            result.close()
            del results[key]
        return page

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.reset_cursors()
        state = self._state()
        for kind in ("async", "sync"):
            manager = state.pop(kind, None)
            if manager is not None:
                manager.close()
