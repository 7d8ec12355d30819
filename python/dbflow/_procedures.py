"""Stored procedures: what ``call_procedure`` returns (:class:`ProcedureResult`)
and how a table-valued parameter is passed (:class:`TableValue`).

>>> result = db.call_procedure(
...     "dbo.close_orders",
...     {"customer_id": 7, "ids": TableValue("dbo.IdList", [(1,), (2,), (3,)])},
...     output={"closed": "int"},
... )
>>> result.output["closed"], result.return_value, result.result_sets[0]

Both pickle (Prefect task results, multiprocessing) and compare by value.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbflow.exceptions import ParameterError

__all__ = ["ProcedureResult", "TableValue"]


@dataclass(frozen=True)
class ProcedureResult:
    """What ``call_procedure`` returns: every result set the procedure
    produced, its OUTPUT parameters, its RETURN code, the rows each
    statement affected, and the server's messages.

    ``ProcedureResult()`` is an empty result (every field defaults to empty
    or ``None``), e.g. to script a mock. It pickles and compares by value.
    """

    result_sets: list[list[dict[str, Any]]] = field(default_factory=list)
    """Every result set, in the order the server sent them; each a list of
    rows as dicts (as ``execute_query`` returns them). Empty when the
    procedure selected nothing."""

    output: dict[str, Any] = field(default_factory=dict)
    """The OUTPUT (and INPUT OUTPUT) parameters by name, without ``@``: the
    names given as ``output=``, with the values the procedure left in them.
    On PostgreSQL, the procedure's ``OUT``/``INOUT`` parameters."""

    return_value: int | None = None
    """SQL Server's ``RETURN`` code (0 when the procedure returns none);
    ``None`` on PostgreSQL, whose procedures have no return code."""

    rowcounts: list[int] = field(default_factory=list)
    """Rows affected, one entry per statement for which the server reports
    a count (SQL Server's ``DONE`` counts unless ``SET NOCOUNT ON``;
    PostgreSQL's command tags), in order."""

    messages: list[str] = field(default_factory=list)
    """The server's messages, in order: SQL Server ``PRINT`` and
    ``RAISERROR`` of severity 10 or less, PostgreSQL ``RAISE
    NOTICE``/``INFO``/``WARNING``. All of them, also those past the 50 a
    call logs to the ``dbflow`` logger."""

    def __repr__(self) -> str:
        sets = ", ".join(_rows(len(rows)) for rows in self.result_sets)
        return (
            f"ProcedureResult(result_sets=[{sets}], output={self.output!r}, "
            f"return_value={self.return_value!r}, rowcounts={self.rowcounts!r}, "
            f"messages={len(self.messages)})"
        )


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _is_arrow(data: object) -> bool:
    return hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__")


def _kind(value: object) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


class TableValue:
    """A table-valued parameter (SQL Server): the rows of a user-defined
    table type, passed as one parameter to ``call_procedure`` or a
    statement (``:ids`` in ``SELECT ... FROM :ids``).

    ``TableValue(type_name, rows, *, columns=None)``:

    - ``type_name``: the table type, e.g. ``"dbo.IdList"``.
    - ``rows``: dicts (by column name; every row has the same keys), or
      tuples/lists in the type's column order (``[(1,), (2,)]`` for a
      one-column type), from any iterable (materialized into a list here);
      or Arrow data (a pyarrow Table or RecordBatch, a Polars DataFrame:
      anything with ``__arrow_c_stream__`` or ``__arrow_c_array__``), kept as
      it is and read when the call is sent.
    - ``columns``: the column names, for tuple rows whose order differs from
      the type's; for dict rows the order to send (the keys of the first row
      when not given).

    Mistakes (rows with different keys or lengths, a mix of dicts and
    tuples) raise :class:`dbflow.ParameterError` here, naming the row.
    PostgreSQL has no table-valued parameters: pass a list as an array
    parameter there (``unnest(:ids)``, ``= ANY(:ids)``).

    ``len(tv)`` is the row count. A ``TableValue`` pickles and compares by
    value.
    """

    __slots__ = ("columns", "rows", "type_name")

    type_name: str
    #: A list of dicts or of tuples, or the Arrow data as given.
    rows: Any
    #: The column names, or None (tuple rows in the type's order, Arrow data).
    columns: tuple[str, ...] | None

    def __init__(
        self,
        type_name: str,
        rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]] | Any,
        *,
        columns: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(type_name, str) or not type_name.strip():
            raise ParameterError(
                "TableValue: type_name must be the table type's name as a non-empty str "
                f"(e.g. 'dbo.IdList'), not {type_name!r}"
            )
        where = f"TableValue({type_name!r})"
        names = _columns(where, columns)
        if _is_arrow(rows):
            if names is not None:
                raise ParameterError(
                    f"{where}: columns= is for rows given as tuples or dicts; Arrow data names "
                    "its own columns (rename or select them in the Arrow data instead)"
                )
            self._set(type_name, rows, None)
            return
        if isinstance(rows, (str, bytes, bytearray, memoryview)):
            raise ParameterError(
                f"{where}: rows is {_kind(rows)}; pass the rows as a list of dicts or of "
                "tuples (a one-column type: [(1,), (2,)]), or Arrow data"
            )
        if isinstance(rows, Mapping):
            raise ParameterError(
                f"{where}: rows is a single dict; pass a list of rows, e.g. [{{...}}, {{...}}]"
            )
        try:
            given = list(rows)
        except TypeError:
            raise ParameterError(
                f"{where}: rows is {_kind(rows)}, which is not iterable; pass the rows as a "
                "list of dicts or of tuples, or Arrow data"
            ) from None
        if not given:
            self._set(type_name, [], names)
            return
        if isinstance(given[0], Mapping):
            self._set(type_name, *_dict_rows(where, given, names))
        else:
            self._set(type_name, _tuple_rows(where, given, names), names)

    def _set(self, type_name: str, rows: Any, columns: tuple[str, ...] | None) -> None:
        object.__setattr__(self, "type_name", type_name)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "columns", columns)

    @property
    def is_arrow(self) -> bool:
        """Whether the rows are Arrow data (kept as given) rather than a list."""
        return not isinstance(self.rows, list)

    def __len__(self) -> int:
        rows = self.rows
        if isinstance(rows, list):
            return len(rows)
        for attribute in ("num_rows", "height"):
            count = getattr(rows, attribute, None)
            if isinstance(count, int):
                return count
        try:
            return len(rows)
        except TypeError:
            raise TypeError(
                f"TableValue({self.type_name!r}): the row count of this "
                f"{type(rows).__name__} is not known before it is read (an Arrow stream)"
            ) from None

    def __repr__(self) -> str:
        try:
            size = _rows(len(self))
        except TypeError:
            size = type(self.rows).__name__
        return f"TableValue({self.type_name!r}, {size})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TableValue):
            return NotImplemented
        if (self.type_name, self.columns) != (other.type_name, other.columns):
            return False
        if self.rows is other.rows:
            return True
        if isinstance(self.rows, list) and isinstance(other.rows, list):
            return self.rows == other.rows
        if type(self.rows) is not type(other.rows):
            return False
        equals = getattr(self.rows, "equals", None)
        if equals is None:
            return False
        try:
            same = equals(other.rows)
        except Exception:
            return False
        return same if isinstance(same, bool) else False

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"TableValue is read-only; make a new TableValue instead of setting {name!r}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.type_name, self.rows, self.columns))

    def __copy__(self) -> TableValue:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TableValue:
        # List rows are copied; Arrow data is shared (immutable, and a
        # stream could not be copied at all).
        if isinstance(self.rows, list):
            return _rebuild(self.type_name, copy.deepcopy(self.rows, memo), self.columns)
        return self


def _rebuild(type_name: str, rows: Any, columns: tuple[str, ...] | None) -> TableValue:
    """A validated TableValue again (unpickling, copying), without re-checking."""
    value = object.__new__(TableValue)
    value._set(type_name, rows, columns)
    return value


def _columns(where: str, columns: Sequence[str] | None) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        raise ParameterError(
            f"{where}: columns is a str; pass a list of column names, e.g. [{columns!r}]"
        )
    names = tuple(columns)
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise ParameterError(f"{where}: columns must be non-empty str names, not {bad[0]!r}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ParameterError(f"{where}: columns names {', '.join(map(repr, twice))} twice")
    return names


def _keys(keys: Iterable[str]) -> str:
    return ", ".join(repr(k) for k in sorted(keys, key=str))


def _dict_rows(
    where: str, given: list[Any], names: tuple[str, ...] | None
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    first = list(given[0].keys())
    expected = set(first)
    if names is not None and set(names) != expected:
        missing, extra = expected - set(names), set(names) - expected
        raise ParameterError(
            f"{where}: columns= disagrees with the rows' keys"
            + (f" (not in columns: {_keys(missing)})" if missing else "")
            + (f" (not in the rows: {_keys(extra)})" if extra else "")
            + "; give columns= the same names as the keys (it sets their order), or leave it out"
        )
    rows: list[dict[str, Any]] = []
    for index, row in enumerate(given):
        if not isinstance(row, Mapping):
            raise ParameterError(
                f"{where}: row {index} is {_kind(row)} and row 0 a dict; the rows are all "
                "dicts (by column name) or all tuples (in the type's column order)"
            )
        keys = set(row.keys())
        if keys != expected:
            missing, extra = expected - keys, keys - expected
            raise ParameterError(
                f"{where}: row {index} has other keys than row 0"
                + (f", missing {_keys(missing)}" if missing else "")
                + (f", extra {_keys(extra)}" if extra else "")
                + "; every row has the same columns (None for NULL)"
            )
        rows.append(dict(row))
    return rows, names if names is not None else tuple(first)


def _tuple_rows(
    where: str, given: list[Any], names: tuple[str, ...] | None
) -> list[tuple[Any, ...]]:
    width = len(names) if names is not None else None
    rows: list[tuple[Any, ...]] = []
    for index, row in enumerate(given):
        if isinstance(row, Mapping):
            raise ParameterError(
                f"{where}: row {index} is a dict and row 0 {_kind(given[0])}; the rows are "
                "all dicts (by column name) or all tuples (in the type's column order)"
            )
        if isinstance(row, (str, bytes, bytearray)) or not isinstance(row, Sequence):
            raise ParameterError(
                f"{where}: row {index} is {_kind(row)}; a row is a tuple of the type's "
                f"columns or a dict by column name (one column: [({row!r},), ...])"
            )
        values = tuple(row)
        if width is None:
            width = len(values)
        elif len(values) != width:
            against = f"columns= names {width}" if names is not None else f"row 0 has {width}"
            raise ParameterError(
                f"{where}: row {index} has {len(values)} values and {against}; "
                "every row has a value for each column (None for NULL)"
            )
        rows.append(values)
    return rows
