"""bulk_insert and iter_query on every backend: all or nothing, bounded
memory, early exit."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from backends import Backend

import dbflow


def test_bulk_insert_dicts_and_tuples(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(
        backend.ddl(
            f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, name {{text}}, score {{numeric}}, "
            f"at {{timestamptz}}, ok {{bool}})"
        )
    )
    at = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    rows = [
        {"id": i, "name": f"n{i}", "score": Decimal("1.5"), "at": at, "ok": i % 2 == 0}
        for i in range(500)
    ]
    assert bdb.bulk_insert(btable, rows) == 500
    tuples = [(1000 + i, None, None, None, None) for i in range(10)]
    assert bdb.bulk_insert(btable, tuples, columns=["id", "name", "score", "at", "ok"]) == 10
    assert (
        bdb.bulk_insert(btable, [(2000, "x", Decimal("2"), at, True)]) == 1
    )  # all columns, in order
    got = bdb.execute_query(
        f"SELECT id, name, score, at, ok FROM {btable} WHERE id IN (3, 1000) ORDER BY id"
    )
    assert got == [
        {"id": 3, "name": "n3", "score": Decimal("1.5000"), "at": at, "ok": False},
        {"id": 1000, "name": None, "score": None, "at": None, "ok": None},
    ]
    assert bdb.bulk_insert(btable, []) == 0


def test_bulk_insert_is_all_or_nothing(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, d {{date}})"))
    with pytest.raises(dbflow.IntegrityError):
        bdb.bulk_insert(btable, [{"id": 1, "d": None}, {"id": 1, "d": None}])
    with pytest.raises(dbflow.ParameterError, match="row 1"):
        bdb.bulk_insert(btable, [{"id": 2, "d": dt.date(2024, 1, 1)}, {"id": 3}])
    with pytest.raises(dbflow.ParameterError):
        bdb.bulk_insert("bad; DROP TABLE x", [{"id": 1}])
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable}") == [{"n": 0}]


LONG = 5000  # rows: several chunks are sent before the last is converted


def long_rows(bad_at: int | None = None) -> Iterator[dict[str, object]]:
    """Rows made one at a time (a generator); `bad_at` gets a value no
    column takes."""
    at = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    for i in range(LONG):
        score: object = object() if i == bad_at else Decimal(i) / 4
        yield {"id": i, "name": f"n{i}", "score": score, "at": at + dt.timedelta(seconds=i)}


def long_table(bdb: dbflow.DatabaseManager, backend: Backend, table: str) -> str:
    bdb.execute_query(
        backend.ddl(
            f"CREATE TABLE {table} (id {{int}} PRIMARY KEY, name {{text}}, score {{numeric}}, "
            f"at {{timestamptz}})"
        )
    )
    return f"INSERT INTO {table} (id, name, score, at) VALUES (:id, :name, :score, :at)"


def assert_all_rows(bdb: dbflow.DatabaseManager, table: str) -> None:
    got = bdb.execute_query(
        f"SELECT COUNT(*) AS n, SUM(id) AS ids, SUM(score) AS scores FROM {table}"
    )[0]
    assert got["n"] == LONG
    assert got["ids"] == LONG * (LONG - 1) // 2
    assert Decimal(got["scores"]) == sum(Decimal(i) / 4 for i in range(LONG))
    last = bdb.execute_query(f"SELECT name, at FROM {table} WHERE id = :id", {"id": LONG - 1})
    at = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=LONG - 1)
    assert last == [{"name": f"n{LONG - 1}", "at": at}]


@pytest.mark.parametrize("operation", ["bulk_insert", "execute_many"])
def test_a_generator_of_many_rows_is_loaded_whole(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str, operation: str
) -> None:
    insert = long_table(bdb, backend, btable)
    if operation == "bulk_insert":
        assert bdb.bulk_insert(btable, long_rows()) == LONG
    else:
        assert bdb.execute_many(insert, long_rows()) == LONG
    assert_all_rows(bdb, btable)
    # Tuples in `columns` order stream the same way.
    bdb.execute_query(f"DELETE FROM {btable}")
    tuples = (tuple(r.values()) for r in long_rows())
    assert bdb.bulk_insert(btable, tuples, columns=["id", "name", "score", "at"]) == LONG
    assert_all_rows(bdb, btable)


@pytest.mark.parametrize("operation", ["bulk_insert", "execute_many"])
def test_a_bad_row_late_in_a_long_load_writes_nothing(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str, operation: str
) -> None:
    """Rows are sent while later ones are still converted: a bad row near
    the end must still undo everything sent before it."""
    insert = long_table(bdb, backend, btable)
    bad = LONG - 7
    with pytest.raises(dbflow.ParameterError, match=f"row {bad}") as raised:
        if operation == "bulk_insert":
            bdb.bulk_insert(btable, long_rows(bad_at=bad))
        else:
            bdb.execute_many(insert, long_rows(bad_at=bad))
    assert raised.value.database == bdb.database_name
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable}") == [{"n": 0}]
    # The connection that carried the load is fine (or was replaced).
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
    assert bdb.get_pool_status()["checked_out"] == 0
    assert bdb.bulk_insert(btable, long_rows()) == LONG
    assert_all_rows(bdb, btable)


class Exhausted(Exception):
    pass


@pytest.mark.parametrize("operation", ["bulk_insert", "execute_many"])
def test_the_rows_own_exception_is_raised_unchanged_and_nothing_is_written(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str, operation: str
) -> None:
    insert = long_table(bdb, backend, btable)

    def failing() -> Iterator[dict[str, object]]:
        for i, row in enumerate(long_rows()):
            if i == LONG - 100:
                raise Exhausted("the source ran dry")
            yield row

    with pytest.raises(Exhausted, match="the source ran dry"):
        if operation == "bulk_insert":
            bdb.bulk_insert(btable, failing())
        else:
            bdb.execute_many(insert, failing())
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable}") == [{"n": 0}]
    assert bdb.get_pool_status()["checked_out"] == 0


def test_the_server_refusing_an_earlier_row_wins_over_a_later_exception(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    """execute_many runs its statements in order: a duplicate key in the
    first (a few hundred rows on either backend) is the error, not an
    exception the rows raise after it, which the conversion, running ahead,
    may already have met. (Within one statement's rows, whichever problem
    is found first is raised.)"""
    insert = long_table(bdb, backend, btable)

    def rows() -> Iterator[dict[str, object]]:
        for i, row in enumerate(long_rows()):
            if i == 1500:
                raise Exhausted("not reached in order")
            yield {**row, "id": 5} if i == 6 else row

    with pytest.raises(dbflow.IntegrityError):
        bdb.execute_many(insert, rows())
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable}") == [{"n": 0}]


def test_a_load_the_server_refuses_at_once_stops_reading_the_rows(
    bdb: dbflow.DatabaseManager, backend: Backend
) -> None:
    """A missing table fails on the first chunk: the rest of the rows are
    not converted (a generator is not drained)."""
    taken = 0

    def counted() -> Iterator[tuple[int]]:
        nonlocal taken
        for i in range(100_000):
            taken += 1
            yield (i,)

    with pytest.raises(dbflow.DatabaseError):
        bdb.bulk_insert("no_such_table_here", counted(), columns=["id"])
    assert 0 < taken < 100_000
    assert bdb.get_pool_status()["checked_out"] == 0


def test_iter_query_streams_every_row(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY)"))
    bdb.bulk_insert(btable, [(i,) for i in range(2500)], columns=["id"])
    seen = [
        r["id"]
        for r in bdb.iter_query(
            f"SELECT id FROM {btable} WHERE id >= :lo ORDER BY id", {"lo": 500}, batch_size=300
        )
    ]
    assert seen == list(range(500, 2500))
    assert bdb.get_pool_status()["checked_out"] == 0


def test_iter_query_as_tuples_keeps_every_column(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    """Tuples keep columns a dict would merge (two columns of one name)."""
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, v {{text}})"))
    bdb.bulk_insert(btable, [(i, f"v{i}") for i in range(1200)], columns=["id", "v"])
    sql = f"SELECT id, v, id AS twice, v AS v FROM {btable} WHERE id >= :lo ORDER BY id"
    rows = list(bdb.iter_query(sql, {"lo": 100}, batch_size=250, as_tuples=True))
    assert rows == [(i, f"v{i}", i, f"v{i}") for i in range(100, 1200)]
    assert all(type(r) is tuple for r in rows)
    dicts = list(bdb.iter_query(sql, {"lo": 1190}, batch_size=4))
    assert dicts == [{"id": i, "v": f"v{i}", "twice": i} for i in range(1190, 1200)]
    assert bdb.get_pool_status()["checked_out"] == 0


def test_iter_query_early_exit_releases_the_connection(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY)"))
    bdb.bulk_insert(btable, [(i,) for i in range(5000)], columns=["id"])
    rows = bdb.iter_query(f"SELECT id FROM {btable} ORDER BY id", batch_size=100)
    for row in rows:
        if row["id"] == 10:
            break
    rows.close()
    deadline = time.monotonic() + 5
    while bdb.get_pool_status()["checked_out"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bdb.get_pool_status()["checked_out"] == 0
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]


def test_iter_query_errors_surface(bdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(dbflow.QueryError):
        list(bdb.iter_query("SELECT * FROM no_such_table_for_iter"))


def rows_and_peak(env, name: str, loop: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Run `loop` (which counts into `n`) in a fresh process with `db`
    open; return `n` and that process's peak RSS in KiB. The peak is its
    own `VmHWM`: `getrusage` would report the larger peak of this pytest
    process, which Linux carries over fork and exec."""
    script = (
        textwrap.dedent(
            f"""
        import dbflow
        cfg = dbflow.ConfigManager("test", envs_dir={str(env.root)!r})
        db = dbflow.DatabaseManager({name!r}, config=cfg)
        n = 0
        """
        )
        + textwrap.dedent(loop)
        + textwrap.dedent(
            """
        status = open("/proc/self/status").read().splitlines()
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        print(n, peak)
        """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    n, peak_kb = map(int, done.stdout.split())
    return n, peak_kb


def test_million_rows_stream_in_bounded_memory(env) -> None:  # type: ignore[no-untyped-def]
    n, peak_kb = rows_and_peak(
        env,
        env.database(),
        """
        for row in db.iter_query(
            "SELECT g AS id, md5(g::text) AS name, g * 1.5 AS score "
            "FROM generate_series(1, 1000000) g",
            batch_size=2000,
        ):
            n += 1
        """,
    )
    assert n == 1_000_000
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"


def test_million_rows_stream_in_bounded_memory_on_sql_server(env, mssql_test_url: str) -> None:  # type: ignore[no-untyped-def]
    n, peak_kb = rows_and_peak(
        env,
        env.database(url=mssql_test_url),
        """
        for row in db.iter_query(
            "SELECT TOP 1000000 ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS id, "
            "CONCAT('name ', a.object_id, '-', b.object_id) AS name, CAST(1.5 AS float) AS score "
            "FROM sys.all_objects a CROSS JOIN sys.all_objects b CROSS JOIN sys.all_objects c",
            batch_size=2000,
        ):
            n += 1
        """,
    )
    assert n == 1_000_000
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"


def test_million_rows_load_from_a_generator_in_bounded_memory(env) -> None:  # type: ignore[no-untyped-def]
    """bulk_insert holds a few chunks of converted rows, never the load."""
    name = env.database()
    table = f"t_load_{name}"
    n, peak_kb = rows_and_peak(
        env,
        name,
        f"""
        db.execute_query("CREATE TABLE {table} (id int PRIMARY KEY, name text, score float8)")
        try:
            rows = ((i, f"name {{i}} " * 3, i * 1.5) for i in range(1_000_000))
            db.bulk_insert("{table}", rows, columns=["id", "name", "score"])
            n = db.execute_query("SELECT COUNT(*) AS n FROM {table}")[0]["n"]
        finally:
            db.execute_query("DROP TABLE {table}")
        """,
    )
    assert n == 1_000_000
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
