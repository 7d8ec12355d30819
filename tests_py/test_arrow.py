"""Arrow results on every backend: fetch_arrow against execute_query,
iter_arrow streams (consumed by pyarrow, Polars and DuckDB, closed early,
in bounded memory), partitioned reads, fetch_pandas' dtype backends, the
argument checks and a missing optional library. The type mapping is in
test_arrow_types.py; transactions and the async manager in
test_arrow_tx.py."""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from backends import Backend

import dbflow
from dbflow import ParameterError, QueryError

pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")

UTC = dt.timezone.utc
_names = itertools.count()


def series(backend: Backend, rows: int) -> str:
    """A query of `rows` rows: n (int, 1..rows ascending) and twice (bigint)."""
    if backend.name == "postgresql":
        return f"SELECT n, n::int8 * 2 AS twice FROM generate_series(1, {rows}) AS n ORDER BY n"
    return (
        f"WITH s AS (SELECT TOP ({rows}) ROW_NUMBER() OVER (ORDER BY (SELECT 1)) AS n "
        "FROM sys.all_objects a CROSS JOIN sys.all_objects b) "
        "SELECT CAST(n AS int) AS n, n * 2 AS twice FROM s ORDER BY n"
    )


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    """Poll `condition` until it holds (a deadline, not a sleep for state)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds}s: {what}")
        time.sleep(0.02)


def idle(db: dbflow.DatabaseManager) -> bool:
    return db.get_pool_status()["checked_out"] == 0


# ---- a typed table, read both ways ------------------------------------------


COLUMNS = {
    "id": "{int}",
    "big": "{bigint}",
    "t": "{text}",
    "num": "{numeric}",
    "f": "{float}",
    "flag": "{bool}",
    "raw": "{bytes}",
    "d": "{date}",
    "tm": "{time}",
    "ts": "{timestamp}",
    "tz": "{timestamptz}",
    "u": "{uuid}",
}

ARROW_TYPES = [
    pa.int32(),
    pa.int64(),
    pa.string(),
    pa.decimal128(12, 4),
    pa.float64(),
    pa.bool_(),
    pa.binary(),
    pa.date32(),
    pa.time64("us"),
    pa.timestamp("us"),
    pa.timestamp("us", tz="UTC"),
    pa.uuid(),
]


def mixed_row(i: int) -> dict[str, Any]:
    """Row i; every seventh value of a column is NULL (a different row per column)."""
    values = {
        "id": i,
        "big": (i - 1500) * 3_000_000_007,
        "t": f"row {i} héllo ' ✓" * (i % 4),
        "num": Decimal(f"{(i * 7919) % 100000 - 50000}.{i % 10000:04d}"),
        "f": i / 7 - 100,
        "flag": i % 3 == 0,
        "raw": bytes([i % 256, 0, 255]) * (i % 3),
        "d": dt.date(1960, 1, 1) + dt.timedelta(days=i * 13),
        "tm": dt.time(i % 24, i % 60, (i * 7) % 60, (i * 997) % 1_000_000),
        "ts": dt.datetime(1999, 12, 31, 23, 59, 59)
        + dt.timedelta(seconds=i * 3607, microseconds=i),
        "tz": dt.datetime(2024, 3, 10, 6, 59, 59, tzinfo=UTC) + dt.timedelta(minutes=i * 11),
        "u": uuid.UUID(int=(i * 0x9E3779B97F4A7C15_F39CC0605CEDC834) % 2**128),
    }
    for k, name in enumerate(values):
        if name != "id" and i % 7 == k % 7:
            values[name] = None
    return values


@pytest.fixture
def mixed(bdb: dbflow.DatabaseManager, backend: Backend, btable: str) -> str:
    columns = ", ".join(f"{name} {backend.ddl(ty)}" for name, ty in COLUMNS.items())
    bdb.execute_query(f"CREATE TABLE {btable} ({columns})")
    assert bdb.bulk_insert(btable, [mixed_row(i) for i in range(1, 3001)]) == 3000
    return btable


def test_fetch_arrow_equals_execute_query(bdb: dbflow.DatabaseManager, mixed: str) -> None:
    sql = f"SELECT {', '.join(COLUMNS)} FROM {mixed} ORDER BY id"
    table = bdb.fetch_arrow(sql)
    assert table.column_names == list(COLUMNS)
    assert table.schema.types == ARROW_TYPES
    assert table.num_rows == 3000
    arrow_rows = table.to_pylist()
    rows = bdb.execute_query(sql)
    assert len(rows) == 3000
    for got, want in zip(arrow_rows, rows, strict=True):
        assert got == want
        for name in COLUMNS:  # the same Python types too (exact decimals, UUIDs)
            assert type(got[name]) is type(want[name]), (name, got[name], want[name])
    assert arrow_rows[:2] == [mixed_row(1), mixed_row(2)]
    # Polars and pandas carry the same values.
    frame = bdb.fetch_polars(sql)
    assert frame["num"].to_list() == [r["num"] for r in rows]
    assert frame["big"].to_list() == [r["big"] for r in rows]
    pandas_frame = bdb.fetch_pandas(sql)
    assert [None if pd.isna(v) else v for v in pandas_frame["num"]] == [r["num"] for r in rows]


# ---- iter_arrow --------------------------------------------------------------


def test_iter_arrow_batches(bdb: dbflow.DatabaseManager, backend: Backend) -> None:
    stream = bdb.iter_arrow(series(backend, 5500), batch_rows=1000)
    assert stream.column_names == ["n", "twice"]
    batches = list(stream)
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert all(0 < b.num_rows <= 1000 for b in batches)
    assert sum(b.num_rows for b in batches) == 5500
    assert batches[0].schema.types == [pa.int32(), pa.int64()]
    numbers = [n for b in batches for n in b.column("n").to_pylist()]
    assert numbers == list(range(1, 5501))
    assert [t for b in batches for t in b.column("twice").to_pylist()] == [2 * n for n in numbers]
    assert list(stream) == []  # spent
    assert idle(bdb)
    # The default batch size holds these rows in one batch.
    assert [b.num_rows for b in bdb.iter_arrow(series(backend, 5500))] == [5500]


def test_iter_arrow_is_a_c_stream_for_pyarrow_polars_and_duckdb(
    bdb: dbflow.DatabaseManager, backend: Backend
) -> None:
    sql = series(backend, 3000)
    reader = pa.RecordBatchReader.from_stream(bdb.iter_arrow(sql, batch_rows=700))
    assert reader.schema.names == ["n", "twice"]
    table = reader.read_all()
    assert table.num_rows == 3000 and table.column("n").to_pylist() == list(range(1, 3001))
    frame = pl.DataFrame(bdb.iter_arrow(sql, batch_rows=700))
    assert frame.shape == (3000, 2) and frame["twice"].sum() == 3000 * 3001
    assert frame.schema == {"n": pl.Int32, "twice": pl.Int64}

    duckdb = pytest.importorskip("duckdb")
    source = pa.RecordBatchReader.from_stream(bdb.iter_arrow(sql, batch_rows=700))
    got = duckdb.from_arrow(source).aggregate("count(*), sum(n), max(twice)").fetchall()
    assert got == [(3000, 3000 * 3001 // 2, 6000)]
    wait_until(lambda: idle(bdb), "every stream's connection back in the pool")


def test_duckdb_reads_an_iter_arrow_stream_directly(
    bdb: dbflow.DatabaseManager, backend: Backend
) -> None:
    duckdb = pytest.importorskip("duckdb")
    stream = bdb.iter_arrow(series(backend, 3000), batch_rows=700)
    assert stream.column_names == ["n", "twice"]
    got = duckdb.sql("SELECT count(*), sum(twice) FROM stream").fetchall()
    assert got == [(3000, 3000 * 3001)]


def test_a_stream_handed_over_after_some_batches_gives_the_rest(
    bdb: dbflow.DatabaseManager, backend: Backend
) -> None:
    stream = bdb.iter_arrow(series(backend, 1000), batch_rows=100)
    first = next(stream)
    assert first.column("n").to_pylist() == list(range(1, 101))
    rest = pa.RecordBatchReader.from_stream(stream).read_all()
    assert rest.column("n").to_pylist() == list(range(101, 1001))
    assert list(stream) == []
    with pytest.raises(ValueError, match="already handed over once"):
        pa.RecordBatchReader.from_stream(stream)
    assert idle(bdb)


def test_closing_a_stream_early_releases_its_connection(
    bdb: dbflow.DatabaseManager, backend: Backend
) -> None:
    stream = bdb.iter_arrow(series(backend, 200_000), batch_rows=100)
    assert next(stream).num_rows == 100
    assert bdb.get_pool_status()["checked_out"] == 1
    stream.close()
    assert list(stream) == []
    wait_until(lambda: idle(bdb), "the closed stream's connection released")
    assert bdb.fetch_arrow(series(backend, 3)).column("n").to_pylist() == [1, 2, 3]
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
    # A stream dropped unread (garbage collected) releases it too.
    dropped = bdb.iter_arrow(series(backend, 200_000), batch_rows=100)
    next(dropped)
    del dropped
    gc.collect()
    wait_until(lambda: idle(bdb), "the dropped stream's connection released")
    assert bdb.execute_query("SELECT 2 AS ok") == [{"ok": 2}]


def test_an_empty_stream_has_columns_and_no_batches(
    bdb: dbflow.DatabaseManager, backend: Backend
) -> None:
    sql = series(backend, 10).replace("ORDER BY n", "") + " WHERE n > 100"
    if backend.name == "postgresql":
        sql = "SELECT n, n::int8 * 2 AS twice FROM generate_series(1, 10) AS n WHERE n > 100"
    stream = bdb.iter_arrow(sql)
    assert stream.column_names == ["n", "twice"]
    assert list(stream) == []
    table = pa.RecordBatchReader.from_stream(bdb.iter_arrow(sql)).read_all()
    assert table.num_rows == 0 and table.schema.types == [pa.int32(), pa.int64()]
    assert bdb.fetch_arrow(sql).schema.types == [pa.int32(), pa.int64()]
    assert idle(bdb)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.backends("postgresql")
def test_iter_arrow_streams_in_bounded_memory(bdb: dbflow.DatabaseManager) -> None:
    sql = "SELECT n::int8 AS n, repeat('x', 100) AS pad FROM generate_series(1, 2000000) AS n"
    # Warm up the code paths (and the allocator) on a small stream first.
    assert sum(b.num_rows for b in bdb.iter_arrow(sql.replace("2000000", "50000"))) == 50000
    gc.collect()
    before = rss_bytes()
    peak = before
    rows = streamed = 0
    for batch in bdb.iter_arrow(sql, batch_rows=10_000):
        assert batch.num_rows <= 10_000
        rows += batch.num_rows
        streamed += batch.nbytes
        peak = max(peak, rss_bytes())
        del batch
    assert rows == 2_000_000
    # The whole result is over 200 MiB as Arrow; streamed, the process
    # holds a few batches (about 1 MiB each) at a time.
    assert streamed > 200 * 2**20
    growth = peak - before
    assert growth < 64 * 2**20, f"RSS grew {growth / 2**20:.0f} MiB streaming"


# ---- partitioned reads -------------------------------------------------------


@pytest.fixture
def numbered(bdb: dbflow.DatabaseManager, backend: Backend, btable: str) -> str:
    """id 1..997 (and one NULL id), a name and an amount per row."""
    bdb.execute_query(
        backend.ddl(f"CREATE TABLE {btable} (id {{int}}, name {{text}}, amount {{numeric}})")
    )
    rows: list[dict[str, Any]] = [
        {"id": i, "name": f"n{i % 10}", "amount": Decimal(i) / 8} for i in range(1, 998)
    ]
    rows.append({"id": None, "name": "null id", "amount": Decimal("-1.5000")})
    assert bdb.bulk_insert(btable, rows) == 998
    return btable


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["id"] is not None, r["id"] or 0, repr(r)))


def ids_ascend_across_batches(table: Any) -> None:
    """Rows come range by range: each batch's ids ≤ every later batch's."""
    spans = []
    for batch in table.to_batches():
        ids = [i for i in batch.column("id").to_pylist() if i is not None]
        if ids:
            spans.append((min(ids), max(ids)))
    assert len(spans) >= 2, spans
    assert spans[0][0] <= spans[-1][1]
    for (_, high), (low, _) in itertools.pairwise(spans):
        assert high < low, spans


def test_partitioned_reads_equal_the_plain_read(bdb: dbflow.DatabaseManager, numbered: str) -> None:
    sql = f"SELECT id, name, amount FROM {numbered} WHERE name <> :skip"
    params = {"skip": "n3"}
    plain = bdb.fetch_arrow(sql, params)
    assert plain.num_rows == 998 - 100
    split = bdb.fetch_arrow(sql, params, partition_on="id", partitions=4)
    assert split.schema == plain.schema
    assert by_id(split.to_pylist()) == by_id(plain.to_pylist())
    assert split.column("id").null_count == 1
    ids_ascend_across_batches(split)
    # More partitions than the pool has connections, and than rows.
    many = bdb.fetch_arrow(sql, params, partition_on="id", partitions=2000)
    assert by_id(many.to_pylist()) == by_id(plain.to_pylist())
    # Fewer distinct ids than partitions; one id; no rows at all.
    few = f"SELECT id, name, amount FROM {numbered} WHERE id IN (5, 6) OR id IS NULL"
    got = bdb.fetch_arrow(few, partition_on="id", partitions=4)
    assert by_id(got.to_pylist()) == by_id(bdb.fetch_arrow(few).to_pylist())
    assert got.num_rows == 3
    single = bdb.fetch_arrow(
        f"SELECT id FROM {numbered} WHERE id = :id", {"id": 7}, partition_on="id", partitions=3
    )
    assert single.to_pylist() == [{"id": 7}]
    none = bdb.fetch_arrow(
        f"SELECT id, amount FROM {numbered} WHERE id > 5000", partition_on="id", partitions=4
    )
    assert none.num_rows == 0 and none.schema == plain.select(["id", "amount"]).schema
    only_null = bdb.fetch_arrow(
        f"SELECT id, name FROM {numbered} WHERE id IS NULL", partition_on="id", partitions=4
    )
    assert only_null.to_pylist() == [{"id": None, "name": "null id"}]
    assert idle(bdb)


def test_partitioned_polars_and_pandas(bdb: dbflow.DatabaseManager, numbered: str) -> None:
    sql = f"SELECT id, name, amount FROM {numbered} WHERE id IS NULL OR id >= :low"
    params = {"low": 10}
    plain = bdb.fetch_polars(sql, params).sort("id", nulls_last=False)
    split = bdb.fetch_polars(sql, params, partition_on="id", partitions=3)
    assert split.height == 989
    assert split.sort("id", nulls_last=False).equals(plain)
    assert split.schema == plain.schema
    frame = bdb.fetch_pandas(sql, params, partition_on="id", partitions=3)
    whole = bdb.fetch_pandas(sql, params)
    assert str(frame["id"].dtype) == "Int32"
    key = frame["id"].fillna(-1)
    ordered = frame.assign(k=key).sort_values("k").drop(columns="k").reset_index(drop=True)
    key = whole["id"].fillna(-1)
    expected = whole.assign(k=key).sort_values("k").drop(columns="k").reset_index(drop=True)
    pd.testing.assert_frame_equal(ordered, expected)


def test_more_partitions_than_the_pool_holds_wait_their_turn(
    env,
    backend: Backend,
    bdb: dbflow.DatabaseManager,
    numbered: str,  # type: ignore[no-untyped-def]
) -> None:
    """Eight ranges on a pool of one connection: read one after another, in
    range order, without waiting on the pool's timeout."""
    name = env.database(backend=backend, pool_size=1, max_overflow=0, pool_timeout=2)
    small = env.manager(name)
    try:
        sql = f"SELECT id, name FROM {numbered}"
        parted = small.fetch_arrow(sql, partition_on="id", partitions=8)
        plain = bdb.fetch_arrow(sql)
        assert sorted(
            parted.to_pylist(), key=lambda r: (r["id"] is not None, r["id"] or 0)
        ) == sorted(plain.to_pylist(), key=lambda r: (r["id"] is not None, r["id"] or 0))
        ids = [i for i in parted.column("id").to_pylist() if i is not None]
        assert ids == sorted(ids)
        assert small.get_pool_status()["connections_opened"] == 1
    finally:
        small.dispose()


def test_partition_on_a_column_that_is_not_an_integer(
    bdb: dbflow.DatabaseManager, numbered: str
) -> None:
    sql = f"SELECT id, name, amount FROM {numbered}"
    for column in ("name", "amount"):
        with pytest.raises(
            ParameterError, match=f'partition_on="{column}" must name an integer column'
        ) as info:
            bdb.fetch_arrow(sql, partition_on=column, partitions=2)
        assert info.value.operation == "fetch_arrow"
    with pytest.raises(ParameterError, match='partition_on="name"'):
        bdb.fetch_polars(sql, partition_on="name", partitions=2)
    with pytest.raises(QueryError):  # not a column of the result: the server says so
        bdb.fetch_arrow(sql, partition_on="missing", partitions=2)
    assert bdb.fetch_arrow(sql).num_rows == 998
    assert idle(bdb)


# ---- fetch_pandas ------------------------------------------------------------


def test_fetch_pandas_dtype_backends(bdb: dbflow.DatabaseManager, numbered: str) -> None:
    sql = (
        f"SELECT id, name, amount FROM {numbered} WHERE id IS NULL OR id IN (1, 2) ORDER BY amount"
    )
    frame = bdb.fetch_pandas(sql)
    assert str(frame["id"].dtype) == "Int32"
    assert frame["id"].isna().tolist() == [True, False, False]
    assert frame["id"].tolist()[1:] == [1, 2]
    assert isinstance(frame["name"].dtype, pd.StringDtype)
    amounts = frame["amount"].tolist()
    assert amounts == [Decimal("-1.5000"), Decimal("0.1250"), Decimal("0.2500")]
    assert all(type(a) is Decimal for a in amounts)
    assert [str(a) for a in amounts] == ["-1.5000", "0.1250", "0.2500"]

    arrow = bdb.fetch_pandas(sql, dtype_backend="pyarrow")
    assert list(arrow.dtypes) == [
        pd.ArrowDtype(pa.int32()),
        pd.ArrowDtype(pa.string()),
        pd.ArrowDtype(pa.decimal128(12, 4)),
    ]
    assert arrow["amount"].tolist() == amounts

    with pytest.raises(ParameterError, match="dtype_backend='numpy'"):
        bdb.fetch_pandas(sql, dtype_backend="numpy")
    assert idle(bdb)


def test_a_bad_dtype_backend_is_refused_before_the_query(bdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(ParameterError) as info:
        bdb.fetch_pandas("SELECT 1 AS one", dtype_backend="numpy")
    assert bdb.get_pool_status()["connections_opened"] == 0
    assert str(info.value).startswith(f"[{bdb.database_name}] fetch_pandas failed: ")
    assert info.value.database == bdb.database_name


# ---- argument checks ---------------------------------------------------------


def test_argument_errors_name_the_operation(bdb: dbflow.DatabaseManager) -> None:
    name = bdb.database_name
    sql = "SELECT 1 AS id"
    bad: list[tuple[dict[str, Any], str]] = [
        (
            {"partition_on": "id"},
            "partition_on= needs partitions= (how many queries to split the read into)",
        ),
        ({"partitions": 2}, "partitions= needs partition_on= (the column to split the read on)"),
        ({"partition_on": "id", "partitions": 0}, "partitions must be a positive int, not 0"),
        ({"partition_on": "id", "partitions": -2}, "partitions must be a positive int, not -2"),
        ({"partition_on": "id", "partitions": True}, "partitions must be a positive int, not True"),
        ({"partition_on": "id", "partitions": 2.0}, "partitions must be a positive int, not 2.0"),
        ({"partition_on": "", "partitions": 2}, "partition_on must be a column name, not ''"),
        ({"partition_on": 3, "partitions": 2}, "partition_on must be a column name, not 3"),
    ]
    for operation in ("fetch_arrow", "fetch_polars", "fetch_pandas"):
        for kwargs, message in bad:
            with pytest.raises(ParameterError) as info:
                getattr(bdb, operation)(sql, **kwargs)
            assert str(info.value) == f"[{name}] {operation} failed: {message}", kwargs
            assert info.value.operation == operation and info.value.database == name
    with pytest.raises(ParameterError) as info:
        bdb.iter_arrow(sql, batch_rows=0)
    assert (
        str(info.value) == f"[{name}] iter_arrow failed: batch_rows must be a positive int, not 0"
    )
    assert info.value.operation == "iter_arrow"
    # batch_rows is a Rust usize: what is not a non-negative int fails in the binding.
    with pytest.raises(TypeError):
        bdb.iter_arrow(sql, batch_rows=1.5)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        bdb.iter_arrow(sql, batch_rows=-1)
    with pytest.raises(TypeError):
        bdb.fetch_pandas(sql, dtype_backend=None)  # type: ignore[arg-type]
    # Nothing reached the server.
    assert bdb.get_pool_status()["connections_opened"] == 0
    with bdb.transaction() as tx:
        with pytest.raises(ParameterError) as info:
            tx.iter_arrow(sql, batch_rows=0)
        assert str(info.value) == (
            f"[{name}] transaction.iter_arrow failed: batch_rows must be a positive int, not 0"
        )
        with pytest.raises(TypeError, match="partition_on"):
            tx.fetch_arrow(sql, partition_on="id", partitions=2)  # type: ignore[call-arg]
        assert tx.fetch_arrow(sql).to_pylist() == [{"id": 1}]


# ---- a missing optional library ---------------------------------------------


def test_a_missing_library_names_its_extra(
    bdb: dbflow.DatabaseManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = "SELECT 1 AS id"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "polars", None)
        with pytest.raises(ImportError, match=r"fetch_polars needs polars.*dbflow\[polars\]"):
            bdb.fetch_polars(sql)
        assert bdb.fetch_arrow(sql).to_pylist() == [{"id": 1}]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pandas", None)
        with pytest.raises(ImportError, match=r"fetch_pandas needs pandas.*dbflow\[pandas\]"):
            bdb.fetch_pandas(sql)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pyarrow", None)
        with pytest.raises(ImportError, match=r"fetch_arrow needs pyarrow.*dbflow\[arrow\]"):
            bdb.fetch_arrow(sql)
        with pytest.raises(ImportError, match=r"fetch_pandas needs pyarrow.*dbflow\[arrow\]"):
            bdb.fetch_pandas(sql)
        with pytest.raises(ImportError, match=r"iter_arrow needs pyarrow.*dbflow\[arrow\]"):
            next(bdb.iter_arrow(sql))
        # Polars reads the C stream itself: it needs no pyarrow.
        assert bdb.fetch_polars(sql).to_dicts() == [{"id": 1}]
    wait_until(lambda: idle(bdb), "every connection back in the pool")
    assert bdb.fetch_arrow(sql).to_pylist() == [{"id": 1}]
