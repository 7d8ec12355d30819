"""The SQL Server table of the benchmarks: dbflow against what a flow would
use there instead — SQLAlchemy + pyodbc on the FreeTDS ODBC driver (the
replaced design; `fast_executemany` crashes with FreeTDS 1.3, so it stays
off), pymssql and python-tds, each behind a QueuePool of 5 + 10 — on one
server, interleaved, every sample checked against what it must have read or
written. Run by `benchmarks/run.py --mssql-url ...` (or with
DBFLOW_TEST_MSSQL_URL set).

pymssql sends datetimes with millisecond precision, so inserted rows are
checked to the millisecond for every contestant.
"""

from __future__ import annotations

import abc
import datetime as dt
import statistics
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

SIZES = {"select1": 2000, "pk": 2000, "per_row": 1000, "many": 10_000, "threads": 8 * 400}
ROWS = 100_000
COLUMNS = "id, amount, label, created_at, active, payload, ref"
FETCH = f"SELECT {COLUMNS} FROM bench_items ORDER BY id"
DDL = (
    "CREATE TABLE {table} (id int PRIMARY KEY, amount decimal(12, 2), label nvarchar(50), "
    "created_at datetime2(3), active bit, payload nvarchar(200), ref uniqueidentifier)"
)
WORKLOADS = ["select1", "pk", "fetch", "per_row", "many", "threads"]
LABELS = {
    "select1": f"SELECT 1 round trip ({SIZES['select1']} calls)",
    "pk": f"primary-key lookup ({SIZES['pk']} calls)",
    "fetch": f"{ROWS:,} mixed-type rows → dicts",
    "per_row": f"insert one call per row ({SIZES['per_row']} rows)",
    "many": f"batched insert ({SIZES['many']} rows; dbflow `execute_many`)",
    "threads": f"8 threads × PK lookups, pool 5 + 10 ({SIZES['threads']} total)",
}


def rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    start = dt.datetime(2026, 1, 1)
    return [
        {
            "id": offset + i,
            "amount": Decimal(i % 100_000) / 100,
            "label": f"label {i}",
            "created_at": start + dt.timedelta(seconds=i, milliseconds=i % 1000),
            "active": i % 2 == 0,
            "payload": f'{{"i": {i}}}',
            "ref": uuid.UUID(int=offset + i),
        }
        for i in range(n)
    ]


def parts(url: str) -> dict[str, Any]:
    u = urllib.parse.urlsplit(url)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 1433,
        "user": urllib.parse.unquote(u.username or ""),
        "password": urllib.parse.unquote(u.password or ""),
        "database": u.path.lstrip("/") or "master",
    }


class Dbflow:
    name = "dbflow"

    def __init__(self, url: str) -> None:
        import dbflow

        settings = {"connection_string": url, "pool_size": 5, "max_overflow": 10}
        config = dbflow.ConfigManager("bench", envs_dir=tempfile.mkdtemp())
        self.db = dbflow.DatabaseManager(
            "msbench", config=config.with_settings("msbench", {**settings, "auto_migrate": "off"})
        )

    def opens(self) -> int:
        return int(self.db.get_pool_status()["connections_opened"])

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.db.execute_query(sql, params)

    def select1(self, n: int) -> int:
        return sum(self.db.execute_query("SELECT 1 AS one")[0]["one"] for _ in range(n))

    def pk(self, n: int) -> int:
        sql = f"SELECT {COLUMNS} FROM bench_items WHERE id = :id"
        return sum(self.db.execute_query(sql, {"id": i % 1000})[0]["id"] for i in range(n))

    def fetch(self) -> list[dict[str, Any]]:
        return self.db.execute_query(FETCH)

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} ({COLUMNS}) VALUES (:id, :amount, :label, :created_at, :active, :payload, :ref)"
        for row in data:
            self.db.execute_query(sql, row)

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = f"INSERT INTO {table} ({COLUMNS}) VALUES (:id, :amount, :label, :created_at, :active, :payload, :ref)"
        self.db.execute_many(sql, data)

    def threads(self, n: int) -> int:
        q = self.db.execute_query
        sql = f"SELECT {COLUMNS} FROM bench_items WHERE id = :id"
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(lambda i: q(sql, {"id": i % 1000})[0]["id"], range(n)))


class DbapiPool(abc.ABC):
    """A DB-API driver behind SQLAlchemy's QueuePool (5 + 10, no pre-ping:
    the fastest way to pool it); `qmark` is the driver's placeholder."""

    name = ""
    qmark = "%s"

    @abc.abstractmethod
    def connect(self) -> Any:
        """A new connection of this driver."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.dialects import mssql
        from sqlalchemy.pool import QueuePool

        self.cfg = parts(url)
        self.opened = 0

        def creator() -> Any:
            self.opened += 1
            return self.connect()

        self.pool = QueuePool(creator, pool_size=5, max_overflow=10, dialect=mssql.dialect())

    def opens(self) -> int:
        return self.opened

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        conn = self.pool.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql, params) if params else cur.execute(sql)
            out: list[dict[str, Any]] = []
            if cur.description:
                names = [d[0] for d in cur.description]
                out = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            conn.commit()
            return out
        finally:
            conn.close()

    def select1(self, n: int) -> int:
        return sum(self.query("SELECT 1 AS one")[0]["one"] for _ in range(n))

    def pk(self, n: int) -> int:
        sql = f"SELECT {COLUMNS} FROM bench_items WHERE id = {self.qmark}"
        return sum(self.query(sql, (i % 1000,))[0]["id"] for i in range(n))

    def fetch(self) -> list[dict[str, Any]]:
        return self.query(FETCH)

    def _insert_sql(self, table: str) -> str:
        marks = ", ".join([self.qmark] * 7)
        return f"INSERT INTO {table} ({COLUMNS}) VALUES ({marks})"

    @staticmethod
    def _tuple(r: dict[str, Any]) -> tuple[Any, ...]:
        return (
            r["id"],
            r["amount"],
            r["label"],
            r["created_at"],
            r["active"],
            r["payload"],
            r["ref"],
        )

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = self._insert_sql(table)
        for r in data:
            self.query(sql, self._tuple(r))

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        conn = self.pool.connect()
        try:
            conn.cursor().executemany(self._insert_sql(table), [self._tuple(r) for r in data])
            conn.commit()
        finally:
            conn.close()

    def threads(self, n: int) -> int:
        sql = f"SELECT {COLUMNS} FROM bench_items WHERE id = {self.qmark}"
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(lambda i: self.query(sql, (i % 1000,))[0]["id"], range(n)))


class Replaced:
    """The design dbflow replaces: a SQLAlchemy engine (QueuePool 5 + 10,
    pre-ping) over pyodbc on the FreeTDS ODBC driver, `text()` statements."""

    name = "sqlalchemy+pyodbc (FreeTDS)"

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, event, text

        c = parts(url)
        odbc = (
            f"DRIVER={{FreeTDS}};SERVER={c['host']};PORT={c['port']};DATABASE={c['database']};"
            f"UID={c['user']};PWD={c['password']};TDS_Version=7.4;ClientCharset=UTF-8"
        )
        self.text = text
        self.engine = create_engine(
            "mssql+pyodbc:///?odbc_connect=" + urllib.parse.quote_plus(odbc),
            pool_size=5,
            max_overflow=10,
            pool_pre_ping=True,
        )
        self.opened = 0

        @event.listens_for(self.engine, "connect")
        def counted(*_: Any) -> None:
            self.opened += 1

    def opens(self) -> int:
        return self.opened

    def _q(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(self.text(sql), params or {})
            out = [dict(r._mapping) for r in result.fetchall()] if result.returns_rows else []
            conn.commit()
            return out

    def select1(self, n: int) -> int:
        return sum(self._q("SELECT 1 AS one")[0]["one"] for _ in range(n))

    def pk(self, n: int) -> int:
        sql = f"SELECT {COLUMNS} FROM bench_items WHERE id = :id"
        return sum(self._q(sql, {"id": i % 1000})[0]["id"] for i in range(n))

    def fetch(self) -> list[dict[str, Any]]:
        return self._q(FETCH)

    def _named(self, table: str) -> str:
        return (
            f"INSERT INTO {table} ({COLUMNS}) VALUES "
            "(:id, :amount, :label, :created_at, :active, :payload, :ref)"
        )

    def per_row(self, table: str, data: list[dict[str, Any]]) -> None:
        sql = self._named(table)
        for r in data:
            self._q(sql, r)

    def many(self, table: str, data: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.text(self._named(table)), data)

    def threads(self, n: int) -> int:
        sql = f"SELECT {COLUMNS} FROM bench_items WHERE id = :id"
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(lambda i: self._q(sql, {"id": i % 1000})[0]["id"], range(n)))


class Pymssql(DbapiPool):
    name = "pymssql"

    def connect(self) -> Any:
        import pymssql

        c = self.cfg
        return pymssql.connect(
            server=c["host"],
            port=c["port"],
            user=c["user"],
            password=c["password"],
            database=c["database"],
        )


class PythonTds(DbapiPool):
    name = "python-tds"

    def connect(self) -> Any:
        import pytds

        c = self.cfg
        return pytds.connect(
            dsn=c["host"],
            port=c["port"],
            user=c["user"],
            password=c["password"],
            database=c["database"],
        )


CONTESTANTS: list[type] = [Replaced, Pymssql, PythonTds, Dbflow]


# ---- validation ----------------------------------------------------------------


def check_fetch(result: list[dict[str, Any]]) -> None:
    assert len(result) == ROWS, f"fetched {len(result)} rows, not {ROWS}"
    for i in (0, ROWS // 2, ROWS - 1):
        row = {k.lower(): v for k, v in result[i].items()}
        want = rows(i + 1)[i]
        assert row["id"] == i and row["label"] == want["label"], (row, want)
        assert Decimal(str(row["amount"])) == want["amount"], (row, want)
        assert bool(row["active"]) == want["active"]
        assert str(row["ref"]).lower() == str(want["ref"]), (row, want)


def check_answers(workload: str, got: int) -> None:
    """`SELECT 1`s answered, or the ids the lookups found, summed."""
    n = SIZES[workload]
    want = n if workload == "select1" else sum(i % 1000 for i in range(n))
    assert got == want, f"{workload}: {got}, not {want}"


def check_written(admin: Any, table: str, data: list[dict[str, Any]]) -> None:
    got = admin.execute_query(
        f"SELECT COUNT(*) AS n, SUM(CAST(id AS bigint)) AS ids, SUM(amount) AS amount, "
        f"MAX(created_at) AS latest FROM {table}"
    )[0]
    assert got["n"] == len(data), f"{table}: {got['n']} rows, not {len(data)}"
    assert got["ids"] == sum(r["id"] for r in data)
    assert Decimal(got["amount"]) == sum(r["amount"] for r in data)
    latest = max(r["created_at"] for r in data)
    assert abs((got["latest"] - latest).total_seconds()) < 0.002, (got["latest"], latest)


# ---- the run -------------------------------------------------------------------


def setup(admin: Any) -> None:
    admin.execute_query("DROP TABLE IF EXISTS bench_items")
    admin.execute_query(DDL.format(table="bench_items"))
    admin.bulk_insert("bench_items", rows(ROWS))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


class Worker:
    """One contestant in a process of its own, driven over a pipe: pymssql
    links its own FreeTDS, which must not share a process with the FreeTDS
    ODBC driver pyodbc loads (the two corrupt each other's heap under
    threads), and no contestant's threads compete with another's for the GIL."""

    def __init__(self, name: str, url: str) -> None:
        import json
        import subprocess
        import sys

        self.name = name
        self.json = json
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", name, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, workload: str, table: str | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(self.json.dumps({"workload": workload, "table": table}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker died during {workload}")
        answer: dict[str, Any] = self.json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name} {workload}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def vm_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def serve(name: str, url: str) -> None:
    """The worker's side: run each workload asked for, timed and checked."""
    import json
    import sys

    player = next(c for c in CONTESTANTS if c.name == name)(url)
    player.select1(20)
    player.pk(20)
    for line in sys.stdin:
        ask = json.loads(line)
        workload, table = ask["workload"], ask["table"]
        try:
            fn = getattr(player, workload)
            before = player.opens()
            if table is not None:
                data = rows(SIZES[workload], offset=1_000_000)
                elapsed, _ = timed(lambda fn=fn, t=table, d=data: fn(t, d))
            elif workload == "fetch":
                Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM)
                base = vm_kib("VmRSS")
                elapsed, out = timed(fn)
                grown = vm_kib("VmHWM") - base
                check_fetch(out)
                del out
            else:
                elapsed, got = timed(lambda fn=fn, w=workload: fn(SIZES[w]))
                check_answers(workload, got)
            answer = {"elapsed": elapsed, "opened": player.opens() - before}
            if workload == "fetch":
                answer["memory_kib"] = grown
        except Exception as e:  # reported to the parent, which stops the run
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


def measure(
    url: str, rounds: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, int], dict[str, list[int]]]:
    admin = Dbflow(url)
    setup(admin.db)
    workers = [Worker(c.name, url) for c in CONTESTANTS]
    results: dict[str, dict[str, list[float]]] = {w: {} for w in WORKLOADS}
    opens: dict[str, int] = {}
    memory: dict[str, list[int]] = {}
    seq = 0
    try:
        for r in range(rounds):
            print(f"SQL Server round {r + 1}/{rounds}", flush=True)
            for workload in WORKLOADS:
                for w in workers:  # interleaved: every contestant once per round
                    table = None
                    if workload in ("per_row", "many"):
                        seq += 1
                        table = f"bench_w_{seq}"
                        admin.db.execute_query(f"DROP TABLE IF EXISTS {table}")
                        admin.db.execute_query(DDL.format(table=table))
                    answer = w.run(workload, table)
                    if table is not None:
                        check_written(admin.db, table, rows(SIZES[workload], offset=1_000_000))
                        admin.db.execute_query(f"DROP TABLE {table}")
                    if workload == "threads":
                        opens[w.name] = opens.get(w.name, 0) + answer["opened"]
                    if "memory_kib" in answer:
                        memory.setdefault(w.name, []).append(answer["memory_kib"])
                    results[workload].setdefault(w.name, []).append(answer["elapsed"])
    finally:
        for w in workers:
            w.close()
        admin.db.execute_query("DROP TABLE IF EXISTS bench_items")
    return results, opens, memory


def product(url: str) -> str:
    version = str(Dbflow(url).db.execute_query("SELECT @@VERSION AS v")[0]["v"])
    return version.splitlines()[0].strip()


def table(url: str, rounds: int) -> str:
    name = product(url)
    results, opens, memory = measure(url, rounds)
    base = Replaced.name
    lines = [
        "",
        f"## SQL Server ({name}) — {rounds} rounds, interleaved, medians, "
        "ratio to the replaced design",
        "",
        "| workload | " + " | ".join(c.name for c in CONTESTANTS) + " |",
        "|---|" + "---|" * len(CONTESTANTS),
    ]
    for workload in WORKLOADS:
        ref = statistics.median(results[workload][base])
        cells = []
        for c in CONTESTANTS:
            med = statistics.median(results[workload][c.name])
            cells.append(f"{med * 1000:.1f} ms (**{ref / med:.2f}x**)")
        lines.append(f"| {LABELS[workload]} | " + " | ".join(cells) + " |")
    lines.append(
        "| peak RSS growth, 100k-row fetch (median) | "
        + " | ".join(f"{statistics.median(memory[c.name]) / 1024:.0f} MB" for c in CONTESTANTS)
        + " |"
    )
    lines.append(
        "| connections opened by the 8-thread line, all rounds | "
        + " | ".join(str(opens.get(c.name, 0)) for c in CONTESTANTS)
        + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        serve(sys.argv[2], sys.argv[3])
