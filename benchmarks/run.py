"""dbflow against what Prefect flows would use instead, on one PostgreSQL, in
one run: contestants interleaved (A B C A B C ...) for several rounds;
medians, and ratios to the design dbflow replaces (SQLAlchemy 2 + psycopg2).

    scripts/bench            # installs the peers, builds dbflow (release), starts PostgreSQL
    python benchmarks/run.py --url postgresql://... [--rounds 5]

Writes a Markdown table with the machine's facts to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# One event loop for the asyncio contestants, current for the whole run.
LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
SIZES = {
    "select1": 2000,
    "pk": 2000,
    "per_row": 1000,
    "many": 10_000,
    "update_many": 10_000,
    "bulk_dicts": 10_000,
    "bulk_tuples": 10_000,
    "threads": 8 * 400,
}
SELECT1 = "SELECT 1 AS one"
FETCH = "SELECT id, amount, label, created_at, active, payload, ref FROM bench_items ORDER BY id"
PK = "SELECT id, amount, label, created_at, active, payload, ref FROM bench_items WHERE id = {}"
COLUMN_NAMES = ["id", "amount", "label", "created_at", "active", "payload", "ref"]
INSERT_COLS = f"({', '.join(COLUMN_NAMES)})"
DBFLOW_ROW = "(:id, :amount, :label, :created_at, :active, :payload::jsonb, :ref)"
SQLALCHEMY_ROW = "(:id, :amount, :label, :created_at, :active, CAST(:payload AS jsonb), :ref)"
PSYCOPG_ROW = (
    "(%(id)s, %(amount)s, %(label)s, %(created_at)s, %(active)s, %(payload)s::jsonb, %(ref)s)"
)


def rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return [
        {
            "id": offset + i,
            "amount": Decimal(i) / 100,
            "label": f"label {i}",
            "created_at": now + dt.timedelta(seconds=i),
            "active": i % 2 == 0,
            "payload": json.dumps({"i": i, "tags": ["a", "b"]}),
            "ref": uuid.UUID(int=offset + i),
        }
        for i in range(n)
    ]


# ---- contestants -------------------------------------------------------------
#
# Every workload returns what it read (the number of `SELECT 1`s answered,
# the sum of the ids the lookups found, the rows fetched), so that `measure`
# can check each sample outside the timed region; writes are checked
# against the table.


def one_tuple(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["id"], r["amount"], r["label"], r["created_at"], r["active"], r["payload"], r["ref"])


class Dbflow:
    name = "dbflow"

    def __init__(self, url: str) -> None:
        import dbflow

        settings = {"connection_string": url, "pool_size": 8, "max_overflow": 7}
        config = dbflow.ConfigManager("bench", envs_dir=tempfile.mkdtemp())
        self.db = dbflow.DatabaseManager(
            "bench", config=config.with_settings("bench", {**settings, "auto_migrate": "off"})
        )

    def select1(self, n: int) -> int:
        q = self.db.execute_query
        return sum(q(SELECT1)[0]["one"] for _ in range(n))

    def pk(self, n: int) -> int:
        q = self.db.execute_query
        return sum(q(PK.format(":id"), {"id": i % 1000})[0]["id"] for i in range(n))

    def fetch(self) -> Any:
        return self.db.execute_query(FETCH)

    def fetch_tuples(self) -> Any:
        return self.db.execute_query(FETCH, as_tuples=True)

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {DBFLOW_ROW}"
        for row in data:
            self.db.execute_query(sql, row)

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {DBFLOW_ROW}"
        self.db.execute_many(sql, data)

    def update_many(self, table: str, data: list[dict[str, Any]]) -> None:
        self.db.execute_many(f"UPDATE {table} SET label = :label WHERE id = :id", data)

    def bulk_dicts(self, table: str, data: list[dict[str, Any]]) -> None:
        self.db.bulk_insert(table, data)

    def bulk_tuples(self, table: str, data: list[tuple[Any, ...]]) -> None:
        self.db.bulk_insert(table, data, columns=COLUMN_NAMES)

    def threads(self, n: int) -> int:
        q = self.db.execute_query
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(lambda i: q(PK.format(":id"), {"id": i % 1000})[0]["id"], range(n)))


class Replaced:
    """The design dbflow replaces: SQLAlchemy 2, QueuePool 5+10, pre-ping,
    psycopg2; for bulk loads what its users write: psycopg2's `copy_expert`
    of CSV text on the engine's raw connection."""

    name = "sqlalchemy+psycopg2"

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import QueuePool

        self.text = text
        self.engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg2://", 1),
            poolclass=QueuePool,
            pool_size=5,
            max_overflow=10,
            pool_pre_ping=True,
        )

    def _q(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(self.text(sql), params or {})
            conn.commit()
            return [dict(row._mapping) for row in result.fetchall()] if result.returns_rows else []

    def select1(self, n: int) -> int:
        return sum(self._q(SELECT1)[0]["one"] for _ in range(n))

    def pk(self, n: int) -> int:
        return sum(self._q(PK.format(":id"), {"id": i % 1000})[0]["id"] for i in range(n))

    def fetch(self) -> list[dict[str, Any]]:
        return self._q(FETCH)

    def fetch_tuples(self) -> Any:
        with self.engine.connect() as conn:
            rows = conn.execute(self.text(FETCH)).fetchall()  # Row objects are tuples
            conn.commit()
            return rows

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {SQLALCHEMY_ROW}"
        for row in data:
            self._q(sql, row)

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {SQLALCHEMY_ROW}"
        with self.engine.begin() as conn:
            conn.execute(self.text(sql), data)

    def update_many(self, table: str, data: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.text(f"UPDATE {table} SET label = :label WHERE id = :id"), data)

    def _copy_csv(self, table: str, rows: Any) -> None:
        import csv
        import io

        text = io.StringIO()
        csv.writer(text).writerows(rows)
        text.seek(0)
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.copy_expert(f"COPY {table} {INSERT_COLS} FROM STDIN (FORMAT csv)", text)
            raw.commit()
        finally:
            raw.close()

    def bulk_dicts(self, table: str, data: list[dict[str, Any]]) -> None:
        self._copy_csv(table, (one_tuple(r) for r in data))

    def bulk_tuples(self, table: str, data: list[tuple[Any, ...]]) -> None:
        self._copy_csv(table, data)

    def threads(self, n: int) -> int:
        with ThreadPoolExecutor(8) as pool:
            return sum(
                pool.map(lambda i: self._q(PK.format(":id"), {"id": i % 1000})[0]["id"], range(n))
            )


class Psycopg3:
    name = "psycopg3"

    def __init__(self, url: str) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(
            url,
            min_size=5,
            max_size=15,
            kwargs={"row_factory": dict_row, "autocommit": True},
            open=True,
        )
        self.pool.wait()

    def _q(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def select1(self, n: int) -> int:
        return sum(self._q(SELECT1)[0]["one"] for _ in range(n))

    def pk(self, n: int) -> int:
        return sum(self._q(PK.format("%s"), (i % 1000,))[0]["id"] for i in range(n))

    def fetch(self) -> list[dict[str, Any]]:
        return self._q(FETCH)

    def fetch_tuples(self) -> Any:
        from psycopg.rows import tuple_row

        with self.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            return cur.execute(FETCH).fetchall()

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {PSYCOPG_ROW}"
        for row in data:
            self._q(sql, row)

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {PSYCOPG_ROW}"
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, data)

    def update_many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"UPDATE {table} SET label = %(label)s WHERE id = %(id)s"
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, data)

    def _copy(self, table: str, rows: Any) -> None:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY {table} {INSERT_COLS} FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)

    def bulk_dicts(self, table: str, data: list[dict[str, Any]]) -> None:
        self._copy(table, (one_tuple(r) for r in data))

    def bulk_tuples(self, table: str, data: list[tuple[Any, ...]]) -> None:
        self._copy(table, data)

    def threads(self, n: int) -> int:
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(lambda i: self._q(PK.format("%s"), (i % 1000,))[0]["id"], range(n)))


class Asyncpg:
    name = "asyncpg"

    def __init__(self, url: str) -> None:
        import asyncpg

        async def parse_json(conn: Any) -> None:
            # asyncpg alone returns jsonb as str; every other contestant
            # returns parsed JSON, so give it the codec its docs describe,
            # in the binary form (version byte 1, then the text) that its
            # binary COPY (copy_records_to_table) needs.
            await conn.set_type_codec(
                "jsonb",
                schema="pg_catalog",
                format="binary",
                decoder=lambda b: json.loads(b[1:]),
                encoder=lambda v: b"\x01" + (v if isinstance(v, str) else json.dumps(v)).encode(),
            )

        self.loop = LOOP
        self.pool = self.loop.run_until_complete(
            asyncpg.create_pool(url, min_size=5, max_size=15, ssl=False, init=parse_json)
        )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def select1(self, n: int) -> int:
        async def go() -> int:
            seen = 0
            for _ in range(n):
                async with self.pool.acquire() as c:
                    found = [dict(r) for r in await c.fetch(SELECT1)]
                    seen += found[0]["one"]
            return seen

        return int(self.run(go()))

    def pk(self, n: int) -> int:
        async def go() -> int:
            total = 0
            for i in range(n):
                async with self.pool.acquire() as c:
                    found = [dict(r) for r in await c.fetch(PK.format("$1"), i % 1000)]
                    total += found[0]["id"]
            return total

        return int(self.run(go()))

    def fetch(self) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            async with self.pool.acquire() as c:
                return [dict(r) for r in await c.fetch(FETCH)]

        result: list[dict[str, Any]] = self.run(go())
        return result

    def fetch_tuples(self) -> Any:
        async def go() -> Any:
            async with self.pool.acquire() as c:
                return await c.fetch(FETCH)  # Records are tuple-like

        return self.run(go())

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)"
        args = [tuple(r.values()) for r in data]

        async def go() -> None:
            async with self.pool.acquire() as c, c.transaction():
                await c.executemany(sql, args)

        self.run(go())

    def update_many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"UPDATE {table} SET label = $1 WHERE id = $2"
        args = [(r["label"], r["id"]) for r in data]

        async def go() -> None:
            async with self.pool.acquire() as c, c.transaction():
                await c.executemany(sql, args)

        self.run(go())

    def _copy(self, table: str, records: Any) -> None:
        async def go() -> None:
            async with self.pool.acquire() as c:
                await c.copy_records_to_table(table, records=records, columns=COLUMN_NAMES)

        self.run(go())

    def bulk_dicts(self, table: str, data: list[dict[str, Any]]) -> None:
        self._copy(table, [one_tuple(r) for r in data])

    def bulk_tuples(self, table: str, data: list[tuple[Any, ...]]) -> None:
        self._copy(table, data)

    def threads(self, n: int) -> int:
        async def one(i: int) -> int:
            async with self.pool.acquire() as c:
                found = [dict(r) for r in await c.fetch(PK.format("$1"), i % 1000)]
                return int(found[0]["id"])

        async def go() -> int:
            sem = asyncio.Semaphore(8)

            async def bounded(i: int) -> int:
                async with sem:
                    return await one(i)

            return sum(await asyncio.gather(*(bounded(i) for i in range(n))))

        return int(self.run(go()))


class Psqlpy:
    name = "psqlpy"

    def __init__(self, url: str) -> None:
        from psqlpy import ConnectionPool

        self.loop = LOOP
        self.pool = ConnectionPool(dsn=url, max_db_pool_size=15)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def select1(self, n: int) -> int:
        async def go() -> int:
            seen = 0
            for _ in range(n):
                async with self.pool.acquire() as conn:
                    seen += (await conn.execute(SELECT1)).result()[0]["one"]
            return seen

        return int(self.run(go()))

    def pk(self, n: int) -> int:
        async def go() -> int:
            total = 0
            for i in range(n):
                async with self.pool.acquire() as conn:
                    total += (await conn.execute(PK.format("$1"), [i % 1000])).result()[0]["id"]
            return total

        return int(self.run(go()))

    def fetch(self) -> Any:
        async def go() -> Any:
            async with self.pool.acquire() as conn:
                return (await conn.execute(FETCH)).result()

        return self.run(go())

    def fetch_tuples(self) -> Any:
        async def go() -> Any:
            async with self.pool.acquire() as conn:
                return (await conn.execute(FETCH)).result(as_tuple=True)

        return self.run(go())


CONTESTANTS: list[Callable[[str], Any]] = [Replaced, Dbflow, Psycopg3, Asyncpg, Psqlpy]


# ---- measurement --------------------------------------------------------------


def setup_schema(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_items")
        conn.execute(
            "CREATE TABLE bench_items (id int PRIMARY KEY, amount numeric(12,2), label text, "
            "created_at timestamptz, active bool, payload jsonb, ref uuid)"
        )
        with conn.cursor() as cur, cur.copy(f"COPY bench_items {INSERT_COLS} FROM STDIN") as copy:
            for r in rows(100_000):
                copy.write_row(tuple(r.values()))
        conn.execute("ANALYZE bench_items")


def fresh_table(url: str) -> str:
    import psycopg

    name = f"bench_w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE {name} (LIKE bench_items INCLUDING ALL)")
    return name


def drop(url: str, table: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


WORKLOADS = [
    "select1",
    "pk",
    "fetch",
    "fetch_tuples",
    "per_row",
    "many",
    "update_many",
    "bulk_dicts",
    "bulk_tuples",
    "threads",
]
WRITES = ("per_row", "many", "update_many", "bulk_dicts", "bulk_tuples")
LABELS = {
    "select1": f"SELECT 1 round trip ({SIZES['select1']} calls)",
    "pk": f"primary-key lookup ({SIZES['pk']} calls)",
    "fetch": "100,000 mixed-type rows → dicts",
    "fetch_tuples": "the same rows as tuples (records, rows)",
    "per_row": f"insert one call per row ({SIZES['per_row']} rows)",
    "many": f"execute_many ({SIZES['many']} rows)",
    "update_many": f"execute_many of an UPDATE by primary key ({SIZES['update_many']} rows)",
    "bulk_dicts": f"bulk load, rows as dicts ({SIZES['many']} rows; dbflow `bulk_insert`, "
    "the peers' COPY)",
    "bulk_tuples": f"bulk load, rows as tuples ({SIZES['many']} rows)",
    "threads": f"8 threads × PK lookups ({SIZES['threads']} total)",
}

# ---- every sample checked ---------------------------------------------------------

WRITE_OFFSET = 1_000_000
# Every value of every written row, recomputed by the server from its id.
WRITTEN = """
SELECT count(*) AS n,
       count(*) FILTER (WHERE amount = (id - {o}) / 100.0
           AND label = {label}
           AND created_at = TIMESTAMPTZ '2026-01-01 00:00:00+00' + (id - {o}) * INTERVAL '1 second'
           AND active = ((id - {o}) % 2 = 0)
           AND payload = jsonb_build_object('i', id - {o}, 'tags', jsonb_build_array('a', 'b'))
           AND ref = lpad(to_hex(id), 32, '0')::uuid) AS exact,
       min(id) AS lo, max(id) AS hi
FROM {table}
"""


def seed(admin: Any, table: str, data: list[dict[str, Any]]) -> None:
    """The rows an UPDATE workload changes, loaded before its timing."""
    with admin.cursor() as cur, cur.copy(f"COPY {table} {INSERT_COLS} FROM STDIN") as copy:
        for r in data:
            copy.write_row(one_tuple(r))


def check_written(admin: Any, table: str, n: int, relabelled: bool = False) -> None:
    """Every value of every row as written; `relabelled`: with the label
    the UPDATE workload sets ('new <id>') instead."""
    label = "'new ' || id" if relabelled else f"'label ' || (id - {WRITE_OFFSET})"
    got = admin.execute(WRITTEN.format(o=WRITE_OFFSET, table=table, label=label)).fetchone()
    want = (n, n, WRITE_OFFSET, WRITE_OFFSET + n - 1)
    assert tuple(got) == want, f"{table}: (rows, exact, min id, max id) {tuple(got)} != {want}"


def expected_row(i: int) -> tuple[Any, ...]:
    """Row `i` of bench_items as every contestant must return it."""
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i)
    payload = {"i": i, "tags": ["a", "b"]}
    return (i, Decimal(i) / 100, f"label {i}", at, i % 2 == 0, payload, uuid.UUID(int=i))


def check_read(workload: str, name: str, got: Any) -> None:
    """What a read workload returned must be what the server holds."""
    if workload == "select1":
        assert got == SIZES[workload], f"{name}: {got} answers to {SIZES[workload]} SELECT 1s"
    elif workload in ("pk", "threads"):
        want = sum(i % 1000 for i in range(SIZES[workload]))
        assert got == want, f"{name} {workload}: ids summed to {got}, not {want}"
    elif workload in ("fetch", "fetch_tuples"):
        assert len(got) == 100_000, f"{name}: fetched {len(got)} rows"
        for i in (0, 1, 4_999, 50_000, 99_999):
            row = got[i]
            values = tuple(row.values()) if isinstance(row, dict) else tuple(row)
            if workload == "fetch":
                assert isinstance(row, dict), f"{name}: fetch gave {type(row).__name__}, not dicts"
            if isinstance(values[6], str):  # psqlpy alone returns uuid as text (less work)
                values = (*values[:6], uuid.UUID(values[6]))
            assert values == expected_row(i), f"{name} {workload} row {i}: {values}"


def measure(url: str, rounds: int) -> dict[str, dict[str, list[float]]]:
    import psycopg

    players = [make(url) for make in CONTESTANTS]
    for p in players:  # warm up: connections open, statements prepared
        p.select1(20)
        p.pk(20)
    results: dict[str, dict[str, list[float]]] = {w: {} for w in WORKLOADS}
    with psycopg.connect(url, autocommit=True) as admin:
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", file=sys.stderr)
            for workload in WORKLOADS:
                for p in players:  # interleaved: every contestant once per round
                    fn = getattr(p, workload, None)
                    if fn is None:
                        continue
                    if workload in WRITES:
                        size = SIZES[workload]
                        table = fresh_table(url)
                        data: Any = rows(size, offset=WRITE_OFFSET)
                        if workload == "bulk_tuples":
                            data = [one_tuple(r) for r in data]
                        if workload == "update_many":
                            seed(admin, table, data)
                            data = [{"id": r["id"], "label": f"new {r['id']}"} for r in data]
                        elapsed, _ = timed(lambda fn=fn, table=table, data=data: fn(table, data))
                        check_written(admin, table, size, relabelled=workload == "update_many")
                        drop(url, table)
                    elif workload in ("fetch", "fetch_tuples"):
                        elapsed, got = timed(fn)
                        check_read(workload, p.name, got)
                        del got
                    else:
                        elapsed, got = timed(lambda fn=fn, w=workload: fn(SIZES[w]))
                        check_read(workload, p.name, got)
                    results[workload].setdefault(p.name, []).append(elapsed)
    return results


def vm_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory(url: str, contestant: str, method: str = "fetch") -> int:
    """Peak RSS growth (KiB) of the 100k-row fetch, in a fresh process.

    Read from /proc (VmHWM, reset just before the fetch), not getrusage:
    Linux carries ru_maxrss over fork and exec, so a child of this (large)
    process would start with the parent's peak and under-report."""
    code = (
        "import sys; sys.path.insert(0, %r); import run; "
        "p = [c for c in run.CONTESTANTS if c.name == %r][0](%r); p.select1(3); "
        "before = run.vm_kib('VmRSS'); open('/proc/self/clear_refs', 'w').write('5'); "
        "kept = p.%s(); print(run.vm_kib('VmHWM') - before)"
    ) % (str(HERE), contestant, url, method)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        print(f"memory measurement of {contestant} failed: {done.stderr[-500:]}", file=sys.stderr)
        return -1
    return int(done.stdout.strip())


class CountingProxy:
    """Counts client→server writes: one per round trip for a client that
    sends each request in one flush."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.writes = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()

    def pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        while data := src.recv(65536):
            if count:
                self.writes += 1
            dst.sendall(data)


def round_trips(url: str, make: Callable[[str], Any], calls: int = 200) -> float:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    proxy = CountingProxy(parts.port or 5432)
    proxied = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}")
    )
    player = make(proxied)
    player.select1(20)
    time.sleep(0.2)
    before = proxy.writes
    player.select1(calls)
    time.sleep(0.2)
    return (proxy.writes - before) / calls


def migrations_time(url: str, rounds: int) -> list[float]:
    """dbflow applying 200 versioned files (each in its own transaction, with
    its history row) to a fresh database, once per round."""
    import urllib.parse

    import psycopg

    import dbflow

    root = Path(tempfile.mkdtemp())
    (root / "mig").mkdir()
    (root / "mig" / "V1__Create.sql").write_text(
        "CREATE TABLE counter (n int);\nINSERT INTO counter VALUES (0);\n"
    )
    for i in range(2, 201):
        (root / "mig" / f"V{i}__Bump.sql").write_text("UPDATE counter SET n = n + 1;\n")
    times = []
    for r in range(rounds):
        database = f"bench_mig_{os.getpid()}_{r}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        target = urllib.parse.urlsplit(url)._replace(path=f"/{database}").geturl()
        Path(root, ".env.bench").write_text(
            f"BENCH_GLOBAL_MIG_CONNECTION_STRING={target}\nBENCH_GLOBAL_MIG_AUTO_MIGRATE=off\n"
        )
        db = dbflow.DatabaseManager(
            "mig", config=dbflow.ConfigManager("bench", envs_dir=root), migrations_dir=root
        )
        times.append(timed(db.run_migrations)[0])
        db.dispose()
        with psycopg.connect(target) as conn:
            bumped = conn.execute("SELECT n FROM counter").fetchone()
        assert bumped == (199,), f"200 migrations left the counter at {bumped}, not 199"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {database} WITH (FORCE)")
    return times


def report(
    results: dict[str, dict[str, list[float]]],
    memory: dict[str, int],
    trips: dict[str, float],
    rounds: int,
    extras: dict[str, list[float]],
    tuple_memory: dict[str, int] | None = None,
) -> str:
    base = Replaced.name
    lines = [
        f"# dbflow benchmarks — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.platform()}; {rounds} rounds, interleaved; "
        "medians; **ratio** = the replaced design's time ÷ this contestant's time (higher is faster).",
        "",
        "| workload | " + " | ".join(c.name for c in CONTESTANTS) + " |",
        "|---|" + "---|" * len(CONTESTANTS),
    ]
    for workload in WORKLOADS:
        cells = []
        ref = statistics.median(results[workload][base]) if base in results[workload] else None
        for c in CONTESTANTS:
            times = results[workload].get(c.name)
            if not times:
                cells.append("—")
                continue
            med = statistics.median(times)
            ratio = f" (**{ref / med:.2f}x**)" if ref else ""
            cells.append(f"{med * 1000:.1f} ms{ratio}")
        lines.append(f"| {LABELS[workload]} | " + " | ".join(cells) + " |")
    if memory:
        lines.append(
            "| peak RSS growth, 100k-row fetch | "
            + " | ".join(f"{memory.get(c.name, -1) / 1024:.0f} MB" for c in CONTESTANTS)
            + " |"
        )
    if tuple_memory:
        lines.append(
            "| peak RSS growth, 100k rows as tuples | "
            + " | ".join(f"{tuple_memory.get(c.name, -1) / 1024:.0f} MB" for c in CONTESTANTS)
            + " |"
        )
    if trips:
        lines.append(
            "| client writes per `SELECT 1` | "
            + " | ".join(f"{trips[c.name]:.2f}" if c.name in trips else "—" for c in CONTESTANTS)
            + " |"
        )
    for label, times in extras.items():
        lines.append(
            f"| {label} | — | {statistics.median(times) * 1000:.1f} ms |"
            + " — |" * (len(CONTESTANTS) - 2)
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("DBFLOW_TEST_POSTGRES_URL"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--mssql-url",
        default=os.environ.get("DBFLOW_TEST_MSSQL_URL"),
        help="also run the SQL Server table against this server (mssql://...)",
    )
    parser.add_argument(
        "--mssql-only", action="store_true", help="only the SQL Server table (no results/ file)"
    )
    parser.add_argument(
        "--workloads",
        help=f"comma-separated subset of {','.join(WORKLOADS)} for a quick look; "
        "prints the table without writing results/",
    )
    args = parser.parse_args()
    if args.mssql_only:
        if not args.mssql_url:
            parser.error("--mssql-only needs --mssql-url or DBFLOW_TEST_MSSQL_URL")
        import mssql

        text = mssql.table(args.mssql_url, args.rounds)
        (HERE / "results" / "mssql-latest.md").write_text(
            f"# dbflow benchmarks, SQL Server only — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
            f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            "every sample checked (rows read, rows written, to the millisecond).\n" + text
        )
        print(text)
        return 0
    if not args.url:
        parser.error("give --url or set DBFLOW_TEST_POSTGRES_URL")
    setup_schema(args.url)
    if args.workloads:
        chosen = args.workloads.split(",")
        unknown = set(chosen) - set(WORKLOADS)
        if unknown:
            parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        WORKLOADS[:] = [w for w in WORKLOADS if w in chosen]
        memory = (
            {c.name: peak_memory(args.url, c.name) for c in CONTESTANTS}
            if "fetch" in chosen
            else {}
        )
        print(report(measure(args.url, args.rounds), memory, {}, args.rounds, {}))
        return 0
    memory = {c.name: peak_memory(args.url, c.name) for c in CONTESTANTS}
    tuple_memory = {c.name: peak_memory(args.url, c.name, "fetch_tuples") for c in CONTESTANTS}
    results = measure(args.url, args.rounds)
    trips = {c.name: round_trips(args.url, c) for c in (Replaced, Dbflow, Psycopg3)}
    extras = {
        "200 migrations applied (one `run_migrations()`, fresh database)": migrations_time(
            args.url, args.rounds
        )
    }
    text = report(results, memory, trips, args.rounds, extras, tuple_memory)
    if args.mssql_url:
        import mssql

        text += mssql.table(args.mssql_url, args.rounds)
    out = HERE / "results" / f"{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}.md"
    out.write_text(text)
    (HERE / "results" / "latest.md").write_text(text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
