"""The rows of the Arrow benchmarks and how every sample is checked.

One definition of the 10 columns serves three places: the SQL that fills the
source tables (PostgreSQL and T-SQL, generated on the server), the Arrow
table the bulk loads start from (built here with the same formulas, in the
types dbflow's `fetch_arrow` returns), and the checksums: for every column a
few exact integers that the server computes over a table (`server_sums`)
and that `client_sums` computes from what a contestant returned, after
`normalise` has brought that result to one form. All checksums are
order-independent sums (weighted by `id % 7` where a value must stay on its
row), so partitioned reads need no sorting.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# name, checksum kind, PostgreSQL type, SQL Server type
COLUMNS = [
    ("id", "int", "int PRIMARY KEY", "int PRIMARY KEY"),
    ("qty", "int", "bigint", "bigint NULL"),  # 30% NULL
    ("amount", "dec", "numeric(12,2)", "decimal(12,2)"),
    ("label", "text", "text", "nvarchar(100)"),
    ("created_at", "ts", "timestamptz", "datetime2(6)"),
    ("day", "date", "date", "date"),
    ("active", "bool", "bool", "bit"),
    ("ref", "uuid", "uuid", "uniqueidentifier"),
    ("payload", "text", "jsonb", "nvarchar(200)"),
    ("score", "float", "float8", "float"),
]
NAMES = [c[0] for c in COLUMNS]
KIND = {c[0]: c[1] for c in COLUMNS}
SELECT = f"SELECT {', '.join(NAMES)} FROM {{table}}"
EPOCH_2026_US = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC, µs since 1970


def pg_ddl(table: str, *, unlogged: bool = False, naive_ts: bool = False) -> str:
    """The PostgreSQL table; `naive_ts`: `timestamp` for SQL Server's datetime2."""
    cols = []
    for name, _, pg, _ in COLUMNS:
        if name == "created_at" and naive_ts:
            pg = "timestamp"
        cols.append(f"{name} {pg}")
    return f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {table} ({', '.join(cols)})"


def tsql_ddl(table: str) -> str:
    return f"CREATE TABLE {table} ({', '.join(f'{n} {ms}' for n, _, _, ms in COLUMNS)})"


# Row i of every source table (the Arrow builder below follows the same formulas):
#   qty NULL when i % 10 < 3, else i*1000+7; amount ((i*7919) % 1e9) / 100;
#   label 'item <i>' (+ ' żółw' when i % 10 = 0); created_at 2026-01-01 + i s + (i % 1e6) µs;
#   day 2000-01-01 + i % 20000; active i % 3 = 0; ref '<i:08>-0000-4000-8000-<i*7919:012>';
#   payload {"i": <i>, "tag": "t<i % 5>"}; score (i % 10007) * 0.125 - 500.
def pg_fill(table: str, n: int) -> str:
    return f"""INSERT INTO {table} ({", ".join(NAMES)}) SELECT i,
      CASE WHEN i % 10 < 3 THEN NULL ELSE i::bigint * 1000 + 7 END,
      ((i::bigint * 7919) % 1000000000) / 100.0,
      'item ' || i || CASE WHEN i % 10 = 0 THEN ' żółw' ELSE '' END,
      TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * INTERVAL '1 second'
          + (i % 1000000) * INTERVAL '1 microsecond',
      DATE '2000-01-01' + i % 20000,
      i % 3 = 0,
      (lpad(i::text, 8, '0') || '-0000-4000-8000-' || lpad((i::bigint * 7919)::text, 12, '0'))::uuid,
      ('{{"i": ' || i || ', "tag": "t' || i % 5 || '"}}')::jsonb,
      (i % 10007) * 0.125 - 500
    FROM generate_series(0, {n - 1}) i"""


def tsql_fill(table: str, n: int) -> str:
    digits = "(VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)) t(v)"
    places = max(1, len(str(n - 1)))  # 10**places numbers, enough for n
    joins = " CROSS JOIN ".join(f"d d{k}" for k in range(places))
    number = " + ".join(f"{10**k}*d{k}.v" for k in range(places))
    return f"""WITH d AS (SELECT v FROM {digits}), n AS (SELECT {number} AS i FROM {joins})
    INSERT INTO {table} ({", ".join(NAMES)}) SELECT i,
      CASE WHEN i % 10 < 3 THEN NULL ELSE CAST(i AS bigint) * 1000 + 7 END,
      CAST((CAST(i AS bigint) * 7919) % 1000000000 AS decimal(14,0)) / 100,
      N'item ' + CAST(i AS nvarchar(10)) + CASE WHEN i % 10 = 0 THEN N' żółw' ELSE N'' END,
      DATEADD(microsecond, i % 1000000, DATEADD(second, i, CAST('2026-01-01' AS datetime2(6)))),
      DATEADD(day, i % 20000, CAST('2000-01-01' AS date)),
      CASE WHEN i % 3 = 0 THEN 1 ELSE 0 END,
      CAST(RIGHT('00000000' + CAST(i AS varchar(10)), 8) + '-0000-4000-8000-'
           + RIGHT('000000000000' + CAST(CAST(i AS bigint) * 7919 AS varchar(20)), 12)
           AS uniqueidentifier),
      N'{{"i": ' + CAST(i AS nvarchar(10)) + N', "tag": "t' + CAST(i % 5 AS nvarchar(1)) + N'"}}',
      (i % 10007) * 0.125e0 - 500
    FROM n WHERE i < {n}"""


def arrow_source(n: int) -> Any:
    """The rows as a pyarrow Table in dbflow's types (decimal128(12,2),
    timestamp[us, UTC], date32, arrow.uuid, jsonb as string), built with
    numpy from the formulas above; checked against the server at setup."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    i = np.arange(n, dtype=np.int64)
    unscaled = np.zeros((n, 2), np.int64)  # decimal128: 16-byte little-endian integers
    unscaled[:, 0] = (i * 7919) % 1_000_000_000
    amount = pa.Array.from_buffers(pa.decimal128(12, 2), n, [None, pa.py_buffer(unscaled)])
    istr = pc.cast(pa.array(i), pa.string())
    suffix = pa.array(np.where(i % 10 == 0, " żółw", ""))
    ref_text = pc.binary_join_element_wise(
        pc.utf8_lpad(istr, 8, "0"),
        "-0000-4000-8000-",
        pc.utf8_lpad(pc.cast(pa.array(i * 7919), pa.string()), 12, "0"),
        "",
    )
    day0 = (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days
    return pa.table(
        {
            "id": pa.array(i.astype(np.int32)),
            "qty": pa.array(i * 1000 + 7, mask=(i % 10) < 3),
            "amount": amount,
            "label": pc.binary_join_element_wise("item ", istr, suffix, ""),
            "created_at": pa.array(EPOCH_2026_US + i * 1_000_000 + i % 1_000_000).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "day": pa.array((day0 + i % 20000).astype(np.int32)).cast(pa.date32()),
            "active": pa.array(i % 3 == 0),
            "ref": uuid_from_text(ref_text),
            "payload": pc.binary_join_element_wise(
                '{"i": ', istr, ', "tag": "t', pc.cast(pa.array(i % 5), pa.string()), '"}', ""
            ),
            "score": pa.array((i % 10007) * 0.125 - 500),
        }
    )


# ---- UUIDs between text and 16 bytes, vectorised -------------------------------

_HEX = b"0123456789abcdef"


def uuid_from_text(strings: Any) -> Any:
    """36-character UUID strings (no NULLs) → arrow.uuid, with numpy."""
    import numpy as np
    import pyarrow as pa

    a = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
    a = a.cast(pa.string())
    n = len(a)
    offsets = np.frombuffer(a.buffers()[1], np.int32)[a.offset : a.offset + n + 1]
    assert (np.diff(offsets) == 36).all(), "UUID text must be 36 characters"
    chars = np.frombuffer(a.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(n, 36)
    hexd = np.delete(chars, [8, 13, 18, 23], axis=1)
    nib = np.where(hexd >= 97, hexd - 87, np.where(hexd >= 65, hexd - 55, hexd - 48))
    raw = ((nib[:, 0::2] << 4) | nib[:, 1::2]).astype(np.uint8)
    fsb = pa.Array.from_buffers(pa.binary(16), n, [None, pa.py_buffer(raw.tobytes())])
    return pa.ExtensionArray.from_storage(pa.uuid(), fsb)


def uuid_to_text(raw16: Any) -> list[str | None]:
    """16-byte values (fixed or variable binary) → lowercase hyphenated text."""
    import numpy as np
    import pyarrow as pa

    a = raw16.combine_chunks() if isinstance(raw16, pa.ChunkedArray) else raw16
    if isinstance(a, pa.ExtensionArray):
        a = a.storage
    if a.null_count:
        return [None if v is None else str(_uuid.UUID(bytes=v)) for v in a.to_pylist()]
    if not pa.types.is_fixed_size_binary(a.type):
        a = a.cast(pa.binary(16))
    n = len(a)
    raw = np.frombuffer(a.buffers()[1], np.uint8)[a.offset * 16 : (a.offset + n) * 16]
    raw = raw.reshape(n, 16)
    hexd = np.empty((n, 32), np.uint8)
    table = np.frombuffer(_HEX, np.uint8)
    hexd[:, 0::2] = table[raw >> 4]
    hexd[:, 1::2] = table[raw & 15]
    out = np.full((n, 36), ord("-"), np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)),
                     (slice(12, 16), slice(14, 18)), (slice(16, 20), slice(19, 23)),
                     (slice(20, 32), slice(24, 36))):  # fmt: skip
        out[:, dst] = hexd[:, src]
    blob = out.tobytes().decode("ascii")
    return [blob[k : k + 36] for k in range(0, 36 * n, 36)]


import uuid as _uuid  # noqa: E402  (used by uuid_to_text's NULL path)

# ---- normalising a contestant's result ------------------------------------------


@dataclass
class Normalised:
    """Each column as plain Python-friendly arrays, and what had to change."""

    columns: dict[str, Any]
    notes: set[str] = field(default_factory=set)  # lossy or re-shaped types, for footnotes


def as_columns(result: Any) -> dict[str, Any]:
    """A pyarrow Table, Polars or pandas DataFrame → {name: pyarrow array}."""
    import pyarrow as pa

    mod = type(result).__module__
    if mod.startswith("polars"):
        result = result.to_arrow()
    if isinstance(result, pa.RecordBatch):
        result = pa.Table.from_batches([result])
    if isinstance(result, pa.Table):
        return {name.lower(): result.column(name) for name in result.column_names}
    if mod.startswith("pandas"):
        return {str(name).lower(): _pandas_column(result[name]) for name in result.columns}
    raise TypeError(f"cannot check a {type(result).__name__}")


def _pandas_column(series: Any) -> Any:
    import pyarrow as pa

    if series.dtype == object:
        values = series.tolist()
        first = next((v for v in values if v is not None), None)
        if isinstance(first, (dict, list)):
            return pa.array([None if v is None else json.dumps(v) for v in values]), "json-parsed"
        if isinstance(first, _uuid.UUID):
            return pa.array([None if v is None else str(v) for v in values]), "uuid-objects"
        return pa.array(values, from_pandas=True)
    return pa.array(series, from_pandas=True)


def normalise(result: Any) -> Normalised:
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = as_columns(result)
    missing = set(NAMES) - set(raw)
    assert not missing, f"the result has no column(s) {sorted(missing)}"
    out = Normalised({})
    for name in NAMES:
        col = raw[name]
        if isinstance(col, tuple):  # pandas objects converted, with what they were
            col, how = col
            out.notes.add(f"{name}: {how}")
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if isinstance(col, pa.ExtensionArray) and not isinstance(col.type, pa.UuidType):
            out.notes.add(f"{name}: {col.type.extension_name}") if name != "payload" else None
            col = col.storage
        kind, t = KIND[name], col.type
        if kind == "int":
            if pa.types.is_floating(t):
                out.notes.add(f"{name}: float64 (NaN for NULL)")
                col = pc.cast(col, pa.int64())  # fails if any value was not integral
            col = pc.cast(col, pa.int64())
        elif kind == "dec":
            if pa.types.is_floating(t):
                out.notes.add(f"{name}: numeric as float64 (lossy)")
                col = pc.cast(pc.round(pc.multiply(col, 100.0)), pa.int64())
            else:
                if pa.types.is_string(t) or pa.types.is_large_string(t):
                    col = pc.cast(col, pa.decimal128(38, 10))
                col = _cents(col)
        elif kind == "float":
            col = pc.cast(col, pa.float64())
        elif kind == "ts":
            if pa.types.is_string(t):
                col = pc.strptime(col, "%Y-%m-%d %H:%M:%S.%f", "us")
            col = pc.cast(
                pc.cast(col, pa.timestamp("us", tz=getattr(col.type, "tz", None))), pa.int64()
            )
        elif kind == "date":
            if pa.types.is_timestamp(t):
                out.notes.add(f"{name}: date as timestamp")
                col = pc.cast(col, pa.timestamp("s"))
                col = pc.cast(pc.divide(pc.cast(col, pa.int64()), 86400), pa.int32())
            else:
                col = pc.cast(col, pa.int32())
        elif kind == "bool":
            col = pc.cast(col, pa.bool_())
        elif kind == "uuid":
            if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
                col = pc.utf8_lower(pc.cast(col, pa.string())).to_pylist()
            else:
                col = uuid_to_text(col)
        elif kind == "text":
            col = pc.cast(col, pa.string()).to_pylist()
            if name == "payload" and col and isinstance(col[0], str) and ": " not in col[0]:
                out.notes.add("payload: JSON re-serialised compactly")
                col = [None if v is None else json.dumps(json.loads(v)) for v in col]
        out.columns[name] = col
    return out


def _cents(col: Any) -> Any:
    """A decimal array → int64 cents (exact: the cast fails if digits would be lost)."""
    import numpy as np
    import pyarrow as pa

    two = col.cast(pa.decimal128(18, 2))  # 16-byte little-endian unscaled integers
    unscaled = np.frombuffer(two.buffers()[1], np.int64)[two.offset * 2 :][: 2 * len(two)]
    return pa.array(unscaled[0::2].copy(), mask=np.asarray(two.is_null()))


# ---- checksums --------------------------------------------------------------------

METRICS = {
    "int": ("n", "sum", "wsum"),
    "dec": ("n", "cents", "wcents"),
    "float": ("n", "sum8", "wsum8"),
    "ts": ("n", "min_us", "max_us", "sum_us"),
    "date": ("n", "min_day", "max_day", "sum_day"),
    "bool": ("n", "true", "true_ids"),
    "uuid": ("n", "chars", "md5"),
    "text": ("n", "chars", "md5"),
}


def _md5_32(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "big", signed=True)


def client_sums(norm: Normalised) -> dict[str, int]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    c = norm.columns
    ids = np.asarray(pc.cast(c["id"], pa.int64()))
    w = ids % 7
    sums: dict[str, int] = {"rows": len(ids)}
    for name in NAMES:
        kind, col = KIND[name], c[name]
        if kind in ("uuid", "text"):
            present = [v for v in col if v is not None]
            got = (len(present), sum(len(v) for v in present), sum(map(_md5_32, present)))
        else:
            valid = np.asarray(pc.is_valid(col))
            if kind == "bool":
                vals = np.asarray(pc.fill_null(col, False))
                got = (int(valid.sum()), int(vals.sum()), int(ids[vals].sum()))
            else:
                vals = np.asarray(pc.fill_null(col, 0))
                if kind == "float":
                    scaled = vals * 8
                    assert (scaled == np.round(scaled)).all(), f"{name}: values off the 1/8 grid"
                    vals = scaled.astype(np.int64)
                vals = vals.astype(np.int64)
                if kind in ("ts", "date"):
                    if kind == "ts":
                        vals = vals - EPOCH_2026_US
                    v = vals[valid]
                    got = (int(valid.sum()), int(v.min()), int(v.max()), int(v.sum()))
                else:
                    got = (int(valid.sum()), int(vals.sum()), int((vals * w).sum()))
        for metric, value in zip(METRICS[kind], got, strict=True):
            sums[f"{name}.{metric}"] = value
    return sums


def _pg_exprs(name: str, kind: str) -> list[str]:
    c = name
    if kind == "int":
        return [f"count({c})", f"sum({c}::numeric)", f"sum({c}::numeric * (id % 7))"]
    if kind == "dec":
        return [f"count({c})", f"sum({c}) * 100", f"sum({c} * (id % 7)) * 100"]
    if kind == "float":
        return [f"count({c})", f"sum({c} * 8)", f"sum({c} * 8 * (id % 7))"]
    if kind == "ts":
        us = f"(extract(epoch from {c}) * 1000000 - {EPOCH_2026_US})"
        return [f"count({c})", f"min({us})", f"max({us})", f"sum({us})"]
    if kind == "date":
        d = f"({c} - DATE '1970-01-01')"
        return [f"count({c})", f"min({d})", f"max({d})", f"sum({d})"]
    if kind == "bool":
        return [
            f"count({c})",
            f"count(*) FILTER (WHERE {c})",
            f"sum(id::bigint) FILTER (WHERE {c})",
        ]
    text = f"{c}::text"
    md5 = f"sum(('x' || substr(md5({text}), 1, 8))::bit(32)::int)"
    return [f"count({c})", f"sum(char_length({text}))", md5]


def _tsql_exprs(name: str, kind: str) -> list[str]:
    c = name
    if kind == "int":
        big = f"CAST({c} AS decimal(38,0))"
        return [f"COUNT({c})", f"SUM({big})", f"SUM({big} * (id % 7))"]
    if kind == "dec":
        return [f"COUNT({c})", f"SUM({c}) * 100", f"SUM({c} * (id % 7)) * 100"]
    if kind == "float":
        return [f"COUNT({c})", f"SUM({c} * 8)", f"SUM({c} * 8 * (id % 7))"]
    if kind == "ts":
        us = f"DATEDIFF_BIG(microsecond, '2026-01-01', {c})"
        return [f"COUNT({c})", f"MIN({us})", f"MAX({us})", f"SUM({us})"]
    if kind == "date":
        d = f"DATEDIFF(day, '1970-01-01', {c})"
        return [f"COUNT({c})", f"MIN({d})", f"MAX({d})", f"SUM(CAST({d} AS bigint))"]
    if kind == "bool":
        return [
            f"COUNT({c})",
            f"SUM(CAST({c} AS int))",
            f"SUM(CASE WHEN {c} = 1 THEN CAST(id AS bigint) ELSE 0 END)",
        ]
    # Babelfish's HASHBYTES hashes the UTF-8 bytes (SQL Server's would hash UTF-16).
    text = f"LOWER(CAST({c} AS varchar(36)))" if kind == "uuid" else c
    md5 = f"SUM(CAST(CAST(CAST(HASHBYTES('MD5', {text}) AS binary(4)) AS int) AS bigint))"
    return [f"COUNT({c})", f"SUM(CAST(LEN({text}) AS bigint))", md5]


def server_sums_sql(table: str, dialect: str) -> tuple[str, list[str]]:
    exprs, keys = ["COUNT(*)"], ["rows"]
    for name, kind, _, _ in COLUMNS:
        made = (_pg_exprs if dialect == "pg" else _tsql_exprs)(name, kind)
        exprs += made
        keys += [f"{name}.{m}" for m in METRICS[kind]]
    return f"SELECT {', '.join(exprs)} FROM {table}", keys


def server_sums(cursor: Any, table: str, dialect: str) -> dict[str, int]:
    """The checksums as the server computes them over `table` (a DB-API cursor)."""
    sql, keys = server_sums_sql(table, dialect)
    cursor.execute(sql)
    row = cursor.fetchone()
    out = {}
    for key, value in zip(keys, row, strict=True):
        value = Decimal(str(value)) if value is not None else Decimal(0)
        assert value == value.to_integral_value(), f"{key}: server checksum {value} not integral"
        out[key] = int(value)
    return out


class Mismatch(AssertionError):
    pass


def compare(who: str, got: dict[str, int], want: dict[str, int]) -> None:
    """Stop the run on the first column whose checksum differs."""
    for key, value in want.items():
        if got.get(key) != value:
            what = "the row count" if key == "rows" else f"column '{key.split('.')[0]}'"
            raise Mismatch(
                f"{who}: {what} differs from the server's: {key} = "
                f"{got.get(key)}, the server's {value}"
            )
