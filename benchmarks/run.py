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
SIZES = {"select1": 2000, "pk": 2000, "per_row": 1000, "many": 10_000, "threads": 8 * 400}
FETCH = "SELECT id, amount, label, created_at, active, payload, ref FROM bench_items ORDER BY id"
PK = "SELECT id, amount, label, created_at, active, payload, ref FROM bench_items WHERE id = {}"
INSERT_COLS = "(id, amount, label, created_at, active, payload, ref)"
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


class Dbflow:
    name = "dbflow"

    def __init__(self, url: str) -> None:
        import dbflow

        d = tempfile.mkdtemp()
        Path(d, ".env.bench").write_text(
            f"BENCH_GLOBAL_BENCH_CONNECTION_STRING={url}\nBENCH_GLOBAL_BENCH_POOL_SIZE=8\n"
            "BENCH_GLOBAL_BENCH_MAX_OVERFLOW=7\nBENCH_GLOBAL_BENCH_AUTO_MIGRATE=off\n"
        )
        self.db = dbflow.DatabaseManager("bench", config=dbflow.ConfigManager("bench", envs_dir=d))

    def select1(self, n: int) -> None:
        q = self.db.execute_query
        for _ in range(n):
            q("SELECT 1")

    def pk(self, n: int) -> None:
        q = self.db.execute_query
        for i in range(n):
            q(PK.format(":id"), {"id": i % 1000})

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

    def bulk(self, table: str, data: list[dict[str, Any]]) -> None:
        self.db.bulk_insert(table, data)

    def threads(self, n: int) -> None:
        q = self.db.execute_query
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: q(PK.format(":id"), {"id": i % 1000}), range(n)))


class Replaced:
    """The design dbflow replaces: SQLAlchemy 2, QueuePool 5+10, pre-ping, psycopg2."""

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

    def select1(self, n: int) -> None:
        for _ in range(n):
            self._q("SELECT 1")

    def pk(self, n: int) -> None:
        for i in range(n):
            self._q(PK.format(":id"), {"id": i % 1000})

    def fetch(self) -> int:
        return len(self._q(FETCH))

    def fetch_tuples(self) -> int:
        with self.engine.connect() as conn:
            rows = conn.execute(self.text(FETCH)).fetchall()  # Row objects are tuples
            conn.commit()
            return len(rows)

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {SQLALCHEMY_ROW}"
        for row in data:
            self._q(sql, row)

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {SQLALCHEMY_ROW}"
        with self.engine.begin() as conn:
            conn.execute(self.text(sql), data)

    def threads(self, n: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self._q(PK.format(":id"), {"id": i % 1000}), range(n)))


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

    def select1(self, n: int) -> None:
        for _ in range(n):
            self._q("SELECT 1")

    def pk(self, n: int) -> None:
        for i in range(n):
            self._q(PK.format("%s"), (i % 1000,))

    def fetch(self) -> int:
        return len(self._q(FETCH))

    def fetch_tuples(self) -> int:
        from psycopg.rows import tuple_row

        with self.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            return len(cur.execute(FETCH).fetchall())

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {PSYCOPG_ROW}"
        for row in data:
            self._q(sql, row)

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES {PSYCOPG_ROW}"
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, data)

    def copy(self, table: str, data: list[dict[str, Any]]) -> None:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY {table} {INSERT_COLS} FROM STDIN") as copy:
                for r in data:
                    copy.write_row(
                        (
                            r["id"],
                            r["amount"],
                            r["label"],
                            r["created_at"],
                            r["active"],
                            r["payload"],
                            r["ref"],
                        )
                    )

    def threads(self, n: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self._q(PK.format("%s"), (i % 1000,)), range(n)))


class Asyncpg:
    name = "asyncpg"

    def __init__(self, url: str) -> None:
        import asyncpg

        async def parse_json(conn: Any) -> None:
            # asyncpg alone returns jsonb as str; every other contestant
            # returns parsed JSON, so give it the codec its docs recommend.
            await conn.set_type_codec(
                "jsonb",
                schema="pg_catalog",
                decoder=json.loads,
                encoder=lambda v: v if isinstance(v, str) else json.dumps(v),
            )

        self.loop = LOOP
        self.pool = self.loop.run_until_complete(
            asyncpg.create_pool(url, min_size=5, max_size=15, ssl=False, init=parse_json)
        )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def select1(self, n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                async with self.pool.acquire() as c:
                    [dict(r) for r in await c.fetch("SELECT 1")]

        self.run(go())

    def pk(self, n: int) -> None:
        async def go() -> None:
            for i in range(n):
                async with self.pool.acquire() as c:
                    [dict(r) for r in await c.fetch(PK.format("$1"), i % 1000)]

        self.run(go())

    def fetch(self) -> int:
        async def go() -> int:
            async with self.pool.acquire() as c:
                return len([dict(r) for r in await c.fetch(FETCH)])

        return int(self.run(go()))

    def fetch_tuples(self) -> int:
        async def go() -> int:
            async with self.pool.acquire() as c:
                return len(await c.fetch(FETCH))  # Records are tuple-like

        return int(self.run(go()))

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} {INSERT_COLS} VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)"
        args = [tuple(r.values()) for r in data]

        async def go() -> None:
            async with self.pool.acquire() as c, c.transaction():
                await c.executemany(sql, args)

        self.run(go())

    def threads(self, n: int) -> None:
        async def one(i: int) -> None:
            async with self.pool.acquire() as c:
                [dict(r) for r in await c.fetch(PK.format("$1"), i % 1000)]

        async def go() -> None:
            sem = asyncio.Semaphore(8)

            async def bounded(i: int) -> None:
                async with sem:
                    await one(i)

            await asyncio.gather(*(bounded(i) for i in range(n)))

        self.run(go())


class Psqlpy:
    name = "psqlpy"

    def __init__(self, url: str) -> None:
        from psqlpy import ConnectionPool

        self.loop = LOOP
        self.pool = ConnectionPool(dsn=url, max_db_pool_size=15)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def select1(self, n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                async with self.pool.acquire() as conn:
                    (await conn.execute("SELECT 1")).result()

        self.run(go())

    def pk(self, n: int) -> None:
        async def go() -> None:
            for i in range(n):
                async with self.pool.acquire() as conn:
                    (await conn.execute(PK.format("$1"), [i % 1000])).result()

        self.run(go())

    def fetch(self) -> int:
        async def go() -> int:
            async with self.pool.acquire() as conn:
                return len((await conn.execute(FETCH)).result())

        return int(self.run(go()))

    def fetch_tuples(self) -> int:
        async def go() -> int:
            async with self.pool.acquire() as conn:
                return len((await conn.execute(FETCH)).result(as_tuple=True))

        return int(self.run(go()))


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


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


WORKLOADS = ["select1", "pk", "fetch", "fetch_tuples", "per_row", "many", "bulk", "copy", "threads"]
LABELS = {
    "select1": f"SELECT 1 round trip ({SIZES['select1']} calls)",
    "pk": f"primary-key lookup ({SIZES['pk']} calls)",
    "fetch": "100,000 mixed-type rows → dicts",
    "fetch_tuples": "the same rows as tuples (records, rows)",
    "per_row": f"insert one call per row ({SIZES['per_row']} rows)",
    "many": f"execute_many ({SIZES['many']} rows)",
    "bulk": f"bulk_insert ({SIZES['many']} rows)",
    "copy": f"raw COPY ({SIZES['many']} rows)",
    "threads": f"8 threads × PK lookups ({SIZES['threads']} total)",
}


def measure(url: str, rounds: int) -> dict[str, dict[str, list[float]]]:
    players = [make(url) for make in CONTESTANTS]
    for p in players:  # warm up: connections open, statements prepared
        p.select1(20)
        p.pk(20)
    results: dict[str, dict[str, list[float]]] = {w: {} for w in WORKLOADS}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
        for workload in WORKLOADS:
            for p in players:  # interleaved: every contestant once per round
                fn = getattr(p, "copy" if workload == "copy" else workload, None)
                if fn is None or (workload == "bulk" and not isinstance(p, Dbflow)):
                    continue
                if workload in ("per_row", "many", "bulk", "copy"):
                    size = SIZES["per_row"] if workload == "per_row" else SIZES["many"]
                    table = fresh_table(url)
                    data = rows(size, offset=1_000_000)
                    elapsed = timed(lambda fn=fn, table=table, data=data: fn(table, data))
                    drop(url, table)
                elif workload in ("fetch", "fetch_tuples"):
                    elapsed = timed(fn)
                else:
                    elapsed = timed(lambda fn=fn, workload=workload: fn(SIZES[workload]))
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
        times.append(timed(db.run_migrations))
        db.dispose()
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
