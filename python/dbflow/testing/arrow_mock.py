"""Arrow results of the test doubles: ``fetch_arrow``, ``iter_arrow``,
``fetch_polars``, ``fetch_pandas`` and Arrow data given to ``bulk_insert``.

A double answers from the same scripted rows as ``execute_query``; pyarrow
infers the types from the Python values (``pyarrow.Table.from_pylist``),
unless the script gave ``add_result(..., arrow_schema=...)``. The
conversions to Polars and pandas are :mod:`dbflow._arrow`'s, the ones the
real managers use. pyarrow is imported only when an Arrow member is called
(a double builds every answer with it, so even ``fetch_polars`` needs it).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any, Protocol

from typing_extensions import Self

from dbflow._arrow import require, to_batch, to_table
from dbflow.exceptions import ParameterError

Row = dict[str, Any]

#: ``iter_arrow``'s default batch size, in rows.
BATCH_ROWS = 65536


class ArrowStream(Protocol):
    """An object exporting the Arrow C stream interface (a pyarrow Table or
    RecordBatchReader, a Polars or pandas DataFrame, an ``iter_arrow``
    result)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...


class ArrowArray(Protocol):
    """An object exporting the Arrow C data interface (a pyarrow RecordBatch)."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> object: ...


def parameter_error(database: str, operation: str, message: str) -> ParameterError:
    """A ParameterError as the real managers raise it: ``str(exc)`` reads
    ``[<database>] <operation> failed: <message>``."""
    return ParameterError(
        f"[{database}] {operation} failed: {message}", database=database, operation=operation
    )


def renamed(error: ParameterError, operation: str) -> ParameterError:
    """`error` (raised for ``execute_query``) as raised by `operation`."""
    old = f"[{error.database}] {error.operation} failed: "
    message = error.message
    if message.startswith(old):
        message = f"[{error.database}] {operation} failed: " + message[len(old) :]
    return ParameterError(
        message, database=error.database, operation=operation, sqlstate=error.sqlstate
    )


def check_partitions(
    database: str, operation: str, partition_on: str | None, partitions: int | None
) -> None:
    """Validate ``partition_on=`` and ``partitions=`` as the real managers do
    (a double accepts them and answers unpartitioned)."""

    def fail(message: str) -> ParameterError:
        return parameter_error(database, operation, message)

    if partitions is not None and (
        isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1
    ):
        raise fail(f"partitions must be a positive int, not {partitions!r}")
    if partition_on is not None and not (isinstance(partition_on, str) and partition_on):
        raise fail(f"partition_on must be a column name, not {partition_on!r}")
    if partition_on is not None and partitions is None:
        raise fail("partition_on= needs partitions= (how many queries to split the read into)")
    if partitions is not None and partition_on is None:
        raise fail("partitions= needs partition_on= (the column to split the read on)")


#: The largest ``batch_rows`` (the real argument is a Rust ``usize``).
_USIZE_MAX = 2**64 - 1


def check_batch_rows(database: str, operation: str, batch_rows: int) -> int:
    """``batch_rows=`` as the real managers take it: converted as a Rust
    ``usize`` first (what is not an int is a TypeError, a negative or huge
    one an OverflowError, a bool its int), then 0 is a ParameterError.
    Returns the number of rows."""
    rows = operator.index(batch_rows)  # TypeError: '<type>' object cannot be interpreted ...
    if rows < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if rows > _USIZE_MAX:
        raise OverflowError("int too big to convert")
    if rows < 1:
        raise parameter_error(database, operation, f"batch_rows must be a positive int, not {rows}")
    return rows


def rows_to_table(rows: list[Row], schema: Any, operation: str) -> Any:
    """The ``pyarrow.Table`` a double answers with: ``rows`` with the types
    pyarrow infers, or ``schema`` (a key of a row that the schema does not
    name is an error rather than a silently dropped column; a key missing
    from a row is NULL)."""
    pa = require("pyarrow", operation)
    if schema is None:
        return pa.Table.from_pylist(rows) if rows else pa.table({})
    names = set(schema.names)
    for index, row in enumerate(rows):
        extra = [key for key in row if key not in names]
        if extra:
            raise ValueError(
                f"{operation}: row {index} has {extra} that the scripted arrow_schema "
                f"does not name (it has {schema.names})"
            )
    return pa.Table.from_pylist(rows, schema=schema)


def is_arrow_data(data: object) -> bool:
    """Whether ``bulk_insert`` takes ``data`` as Arrow data (it exports the
    C stream or C data interface) rather than as an iterable of rows."""
    return hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__")


def arrow_rows(data: object, database: str, columns: object) -> list[Row]:
    """Arrow data given to ``bulk_insert`` as the dict rows a double records."""
    if columns is not None:
        raise parameter_error(
            database,
            "bulk_insert",
            "columns= is for rows given as tuples; Arrow data names its own columns",
        )
    require("pyarrow", "bulk_insert")
    if hasattr(data, "__arrow_c_stream__"):
        table = to_table(data, "bulk_insert")
    else:
        table = to_batch(data)
    rows: list[Row] = table.to_pylist()
    return rows


class MockArrowBatches:
    """What a double's ``iter_arrow`` returns: ``pyarrow.RecordBatch`` es of
    at most ``batch_rows`` rows, and the Arrow C stream interface (so
    ``pyarrow.RecordBatchReader.from_stream(it)``, ``polars.DataFrame(it)``
    and ``bulk_insert`` read it). A stream takes the batches not yet
    iterated; the iterator is exhausted afterwards, as a real stream is."""

    def __init__(self, table: Any, batch_rows: int) -> None:
        self._schema = table.schema
        self._batches: Iterator[Any] = iter(table.to_batches(max_chunksize=batch_rows))

    @property
    def schema(self) -> Any:
        """The ``pyarrow.Schema`` of the batches."""
        return self._schema

    @property
    def column_names(self) -> list[str]:
        """The names of the columns, in order."""
        return list(self._schema.names)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        return next(self._batches)

    def close(self) -> None:
        """Stop: the batches not yet read are dropped."""
        self._batches = iter(())

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        pa = require("pyarrow", "iter_arrow")
        remaining, self._batches = self._batches, iter(())
        reader = pa.RecordBatchReader.from_batches(self._schema, remaining)
        return reader.__arrow_c_stream__(requested_schema)


class AsyncMockArrowBatches:
    """What an async double's ``iter_arrow`` returns: ``async for`` over the
    batches of a :class:`MockArrowBatches`, with its C stream interface."""

    def __init__(self, batches: Any) -> None:
        self._batches = batches

    @property
    def schema(self) -> Any:
        """The ``pyarrow.Schema`` of the batches."""
        return self._batches.schema

    @property
    def column_names(self) -> list[str]:
        """The names of the columns, in order."""
        return list(self._batches.column_names)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._batches)
        except StopIteration:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop: the batches not yet read are dropped."""
        self._batches.close()

    async def aclose(self) -> None:
        """``close``, awaitable (as ``AsyncRowIterator.aclose``)."""
        self._batches.close()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._batches.__arrow_c_stream__(requested_schema)
