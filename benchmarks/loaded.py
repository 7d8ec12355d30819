"""Small calls on a busy machine (issue #29): every line of the PostgreSQL
and SQL Server tables, for dbflow and every peer of those tables (and
optionally a second dbflow build), with 0, 1 and 2 cores kept busy by CPU
burners this harness starts and stops, and with two threads of pure-Python
work in the client's own process ("pool", as Prefect's thread runner has
them: they take the GIL whenever the caller lets go of it).

    scripts/bench --loaded [--rounds 4] [--a-python VENV_A/bin/python --a-name before]
    python benchmarks/loaded.py --pg-url postgresql://... [--mssql-url mssql://...] \\
        [--a-python VENV_A/bin/python --a-name before] [--rounds 4] [--levels 0,1,2,pool]

Each contestant (a client library on one backend) is a process of its own,
driven over a pipe: pymssql and the FreeTDS ODBC driver must not share a
process, and no contestant's threads compete with another's for the GIL.
Per load level, backend and workload the contestants take turns, the order
reversed every round. Every operation is timed on its own (the 8-thread
line: every lookup, in its thread) and every answer checked: reads in the
contestant (`SELECT 1` is 1, the lookup found its row, the fetch is
checked as run.py / mssql.py check it), writes here, by the server, after
the sample (run.check_written / mssql.check_written). The report gives, per
line, the median and p99 latency of every operation of every round, and
the median over rounds of the client CPU the contestant's process burnt
per operation (`time.process_time` around the timed operations, not the
checks; all its threads: with `pool`, the pool's work too), to
`results/loaded-<UTC>.md` (and the raw lines to a `.json` beside it).

The 8-thread line reports the sample's wall time ÷ lookups (eight callers
share the cores: throughput is what counts) and the p99 of one lookup's
latency. asyncpg and psqlpy run one event-loop entry per timed operation
(`run_until_complete`), as a sync caller of them must; their 8-thread line
is their own 8-way `gather`, timed as a whole (no per-lookup p99).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WORKLOADS = ("select1", "pk", "insert", "tx", "many", "fetch", "threads")
LABELS = {
    "select1": "`SELECT 1`",
    "pk": "primary-key lookup",
    "insert": "insert, one call per row",
    "tx": "2000 inserts in one transaction (per insert)",
    "many": "batched insert, 1000 rows per call (`pool`: 250)",
    "fetch": "100,000 mixed-type rows → dicts (per fetch)",
    "threads": "8 threads × PK lookups (wall time ÷ lookups; p99: one lookup)",
}
# Operations per sample, quiet or with burners; with the in-process pool a
# call takes milliseconds (the GIL), so a quarter of them.
OPS = {"select1": 400, "pk": 400, "insert": 200, "tx": 2000, "many": 3, "fetch": 1, "threads": 400}
LEVELS: tuple[str, ...] = ("0", "1", "2", "pool")
# Contestant name -> backend -> (module, class) of run.py / mssql.py.
CLIENTS: dict[str, dict[str, tuple[str, str]]] = {
    "dbflow": {"pg": ("run", "Dbflow"), "ms": ("mssql", "Dbflow")},
    "sqlalchemy": {"pg": ("run", "Replaced"), "ms": ("mssql", "Replaced")},
    "psycopg3": {"pg": ("run", "Psycopg3")},
    "asyncpg": {"pg": ("run", "Asyncpg")},
    "psqlpy": {"pg": ("run", "Psqlpy")},
    "pymssql": {"ms": ("mssql", "Pymssql")},
    "python-tds": {"ms": ("mssql", "PythonTds")},
}
ASYNC = ("asyncpg", "psqlpy")
# The method of run.py's / mssql.py's contestants each line calls; a
# contestant without it has no such line in today's tables either.
METHODS = {
    "select1": "select1",
    "pk": "pk",
    "insert": "per_row",
    "many": "many",
    "fetch": "fetch",
    "threads": "threads",
}
TX_CLIENTS = ("dbflow", "psycopg3", "sqlalchemy", "pymssql", "python-tds", "asyncpg")


def has_line(client: str, backend: str, workload: str) -> bool:
    import importlib

    if workload == "tx":
        return client in TX_CLIENTS
    module, cls = CLIENTS[client][backend]
    return hasattr(getattr(importlib.import_module(module), cls), METHODS[workload])


WRITE_OFFSET = 1_000_000
# A small call slower than this waited for a core (the report's "slow" share).
SLOW_US = 1000
SMALL_CALLS = ("select1", "pk", "insert", "tx", "threads")
SAMPLE_KEYS = ("median", "cpu", "client_wait", "server_cpu", "server_wait")


def batch_rows(pool: bool) -> int:
    """Rows per call of the batched line (row-by-row peers take seconds a
    call under the pool's GIL pressure)."""
    return 250 if pool else 1000


def python_work(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2000))


# ---- the contestant's side -----------------------------------------------------


def write_rows(backend: str, n: int) -> list[dict[str, Any]]:
    import mssql
    import run

    return (run.rows if backend == "pg" else mssql.rows)(n, offset=WRITE_OFFSET)


def one_transaction(
    player: Any, client: str, backend: str, table: str, data: list[Any]
) -> list[float]:
    """`len(data)` inserts in one transaction, each timed; the commit is
    timed with the last."""
    import run

    latencies: list[float] = []

    def each(execute: Callable[[Any], Any]) -> None:
        for row in data:
            started = time.perf_counter()
            execute(row)
            latencies.append(time.perf_counter() - started)

    cols = "id, amount, label, created_at, active, payload, ref"
    if client == "dbflow":
        values = (
            run.DBFLOW_ROW
            if backend == "pg"
            else ("(:id, :amount, :label, :created_at, :active, :payload, :ref)")
        )
        sql = f"INSERT INTO {table} ({cols}) VALUES {values}"
        with player.db.transaction() as tx:
            each(lambda r: tx.execute_query(sql, r))
    elif client == "psycopg3":
        sql = f"INSERT INTO {table} ({cols}) VALUES {run.PSYCOPG_ROW}"
        with player.pool.connection() as conn, conn.transaction():
            each(lambda r: conn.execute(sql, r))
    elif client == "sqlalchemy":
        values = run.SQLALCHEMY_ROW if backend == "pg" else None
        sql = f"INSERT INTO {table} ({cols}) VALUES {values}" if values else player._named(table)
        statement = player.text(sql)
        with player.engine.begin() as conn:
            each(lambda r: conn.execute(statement, r))
    elif client in ("pymssql", "python-tds"):
        sql = player._insert_sql(table)
        conn = player.pool.connect()
        try:
            cur = conn.cursor()
            each(lambda r: cur.execute(sql, player._tuple(r)))
            started = time.perf_counter()
            conn.commit()
            latencies[-1] += time.perf_counter() - started
        finally:
            conn.close()
    elif client == "asyncpg":
        sql = f"INSERT INTO {table} ({cols}) VALUES ($1, $2, $3, $4, $5, $6, $7)"

        async def go() -> None:
            async with player.pool.acquire() as c, c.transaction():
                for r in data:
                    started = time.perf_counter()
                    await c.execute(sql, *run.one_tuple(r))
                    latencies.append(time.perf_counter() - started)

        player.run(go())
    else:
        raise ValueError(f"{client} has no transaction line")
    return latencies


def sample(
    player: Any,
    client: str,
    backend: str,
    workload: str,
    ops: int,
    table: str | None,
    spent: list[float],
    batch: int,
) -> list[float]:
    """One sample's latencies, every answer checked (outside the timing);
    adds the operations' client CPU to `spent[1]`, and the 8-thread line
    sets `spent[0]` to its wall time."""
    import mssql
    import run

    latencies: list[float] = []

    def timed(fn: Callable[[], Any]) -> Any:
        cpu = time.process_time()
        started = time.perf_counter()
        out = fn()
        latencies.append(time.perf_counter() - started)
        spent[1] += time.process_time() - cpu
        return out

    if workload == "select1":
        for _ in range(ops):
            got = timed(lambda: player.select1(1))
            assert got == 1, f"SELECT 1 answered {got!r}"
    elif workload == "pk":
        for _ in range(ops):
            got = timed(lambda: player.pk(1))
            assert got == 0, f"the lookup of id 0 found {got!r}"
    elif workload == "insert":
        assert table
        for row in write_rows(backend, ops):
            timed(lambda row=row: player.per_row(table, [row]))
    elif workload == "tx":
        assert table
        data = write_rows(backend, ops)
        cpu = time.process_time()
        latencies = one_transaction(player, client, backend, table, data)
        spent[1] += time.process_time() - cpu
    elif workload == "many":
        assert table
        data = write_rows(backend, ops * batch)
        for i in range(ops):
            timed(lambda i=i: player.many(table, data[i * batch : (i + 1) * batch]))
    elif workload == "fetch":
        for _ in range(ops):
            got = timed(player.fetch)
            run.check_read("fetch", client, got) if backend == "pg" else mssql.check_fetch(got)
            del got
    elif workload == "threads" and client in ASYNC:
        got = timed(lambda: player.threads(ops))
        spent[0] = latencies[0]
        want = sum(i % 1000 for i in range(ops))
        assert got == want, f"the lookups' ids summed to {got}, not {want}"
        latencies = []  # its lookups are not timed one by one
    elif workload == "threads":
        found: list[int] = []
        lock = threading.Lock()

        def lookups(n: int) -> None:
            mine, ids = [], []
            for _ in range(n):
                started = time.perf_counter()
                ids.append(player.pk(1))
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)
                found.extend(ids)

        workers = [threading.Thread(target=lookups, args=(ops // 8,)) for _ in range(8)]
        cpu = time.process_time()
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        spent[0] = time.perf_counter() - started
        spent[1] += time.process_time() - cpu
        assert found == [0] * (ops // 8 * 8), "a lookup did not find its row"
    return latencies


def serve(client: str, backend: str, url: str) -> None:
    """A contestant: answer one JSON request per line with its sample."""
    import importlib

    module, cls = CLIENTS[client][backend]
    player = getattr(importlib.import_module(module), cls)(url)
    for line in sys.stdin:
        workload, ops, pool, table = json.loads(line)
        stop = threading.Event()
        workers = [threading.Thread(target=python_work, args=(stop,)) for _ in range(2 * pool)]
        for w in workers:
            w.start()
        try:
            spent = [0.0, 0.0]
            latencies = sample(
                player, client, backend, workload, ops, table, spent, batch_rows(bool(pool))
            )
            wall, cpu = spent
            latencies.sort()
            if workload == "threads":
                # Eight callers share two cores: what counts is the lookups
                # done per second (wall time ÷ lookups); p99 is one lookup's.
                answer = {"median": wall / ops * 1e6, "cpu": cpu / ops * 1e6}
            else:
                answer = {
                    "median": statistics.median(latencies) * 1e6,
                    "cpu": cpu / len(latencies) * 1e6,
                }
            # Every operation's latency: the harness takes the p99 over all
            # rounds' operations, not one sample's few slowest.
            answer["latencies"] = [t * 1e6 for t in latencies]
        except Exception as e:  # reported to the harness, which stops the run
            answer = {"error": f"{type(e).__name__}: {e}"}
        finally:
            stop.set()
            for w in workers:
                w.join()
        print(json.dumps(answer), flush=True)


# ---- the harness -----------------------------------------------------------------


def schedstat(pids: list[int]) -> dict[int, tuple[int, int]]:
    """Per process of `pids`: CPU time and run-queue wait (ns: runnable,
    waiting for a core) of all its threads, from
    /proc/<pid>/task/*/schedstat; a process that has ended is left out."""
    out = {}
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        cpu = wait = 0
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ran, waited, _ = f.read().split()
            except (OSError, ValueError):
                continue
            cpu, wait = cpu + int(ran), wait + int(waited)
        out[pid] = (cpu, wait)
    return out


def spent_between(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> tuple[int, int]:
    """CPU and run-queue wait (ns) of the processes alive at the end, since
    the start (all of it for one started meanwhile). A process that ended
    meanwhile (a pool closing a backend) is not counted: a lower bound."""
    cpu = wait = 0
    for pid, (ran, waited) in after.items():
        ran0, waited0 = before.get(pid, (0, 0))
        cpu, wait = cpu + ran - ran0, wait + waited - waited0
    return cpu, wait


def server_pids(url: str) -> list[int]:
    """The server processes behind `url` on this machine: the process
    listening on its port and that process's children (PostgreSQL's and
    Babelfish's backends); none when the server is elsewhere."""
    from urllib.parse import urlsplit

    port = urlsplit(url).port or (5432 if url.startswith("postgres") else 1433)
    try:
        listing = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:  # no `ss` (iproute2) here: no server figures
        return []
    found = [
        int(part.split("=")[1])
        for part in listing.replace(",", " ").split()
        if part.startswith("pid=")
    ]
    if not found:
        return []
    parent = found[0]
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent:
                children.append(int(entry))
    return [parent, *children]


class Contestant:
    def __init__(
        self, name: str, client: str, backend: str, python: str, url: str, server: list[int]
    ) -> None:
        self.name = name
        self.client = client
        self.url = url
        self.server = server
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--serve", client, backend, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, workload: str, ops: int, pool: bool, table: str | None) -> dict[str, float]:
        """One sample; adds where the scheduler put the time, µs per
        operation: the contestant's run-queue wait, and the server's CPU
        and run-queue wait (its backends, read before and after)."""
        assert self.proc.stdin and self.proc.stdout
        # Backends opened since the last sample (a pool growing) count too.
        server = sorted(set(self.server) | set(server_pids(self.url))) if self.server else []
        client_before, server_before = schedstat([self.proc.pid]), schedstat(server)
        self.proc.stdin.write(json.dumps([workload, ops, int(pool), table]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if server:  # backends opened during the sample count too
            server = sorted(set(server) | set(server_pids(self.url)))
        client, servers = (
            spent_between(client_before, schedstat([self.proc.pid])),
            spent_between(server_before, schedstat(server)),
        )
        if not line:
            raise SystemExit(f"{self.name} stopped during {workload}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise SystemExit(f"{self.name} {workload}: {answer['error']}")
        per_op = 1e-3 / ops
        answer["client_wait"] = client[1] * per_op
        # A server not found on this machine has no figures (not zero).
        answer["server_cpu"] = servers[0] * per_op if server else None
        answer["server_wait"] = servers[1] * per_op if server else None
        return answer

    def close(self) -> None:
        self.proc.kill()


class Tables:
    """Fresh tables for the write lines, and the server's check of them."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend, self.url, self.seq = backend, url, 0
        if backend == "pg":
            import psycopg
            import run

            run.setup_schema(url)
            self.admin: Any = psycopg.connect(url, autocommit=True)
        else:
            import mssql

            self.admin = mssql.Dbflow(url).db
            mssql.setup(self.admin)

    def fresh(self) -> str:
        if self.backend == "pg":
            import run

            return run.fresh_table(self.url)
        import mssql

        self.seq += 1
        name = f"bench_l_{self.seq}"
        self.admin.execute_query(f"DROP TABLE IF EXISTS {name}")
        self.admin.execute_query(mssql.DDL.format(table=name))
        return name

    def check_and_drop(self, table: str, n: int) -> None:
        if self.backend == "pg":
            import run

            run.check_written(self.admin, table, n)
            run.drop(self.url, table)
        else:
            import mssql

            mssql.check_written(self.admin, table, mssql.rows(n, offset=WRITE_OFFSET))
            self.admin.execute_query(f"DROP TABLE {table}")


def lines_for(backend: str, url: str, args: argparse.Namespace, out: list[tuple[Any, ...]]) -> None:
    """Measure `backend`'s lines into `out` (kept if the run stops early)."""
    server = server_pids(url)
    contestants = [
        Contestant(client, client, backend, sys.executable, url, server)
        for client, backends in CLIENTS.items()
        if backend in backends and client in args.clients
    ]
    if args.a_python:
        contestants.insert(
            1, Contestant(args.a_name, "dbflow", backend, args.a_python, url, server)
        )
    tables = Tables(backend, url)
    try:
        for level in args.levels:
            pool = level == "pool"
            burners = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(0 if pool else int(level))
            ]
            time.sleep(0.5)
            try:
                for workload in args.workloads:
                    ops = OPS[workload] if not pool else max(1, OPS[workload] // 4)
                    takers = [c for c in contestants if has_line(c.client, backend, workload)]
                    for c in takers:  # warm: connections open, statements prepared
                        run_one(c, tables, workload, min(ops, 20), pool)
                    samples: dict[str, list[dict[str, float]]] = {c.name: [] for c in takers}
                    for r in range(args.rounds):
                        for c in takers if r % 2 == 0 else reversed(takers):
                            samples[c.name].append(run_one(c, tables, workload, ops, pool))
                    row = {name: summarize(workload, got) for name, got in samples.items()}
                    out.append((level, backend, workload, row))
                    print(level, backend, workload, json.dumps(row), flush=True)
            finally:
                for b in burners:
                    b.kill()
    finally:
        for c in contestants:
            c.close()


def percentile(ordered: list[float], q: float) -> float:
    """The q-th quantile of sorted latencies, nearest rank."""
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def summarize(workload: str, samples: list[dict[str, Any]]) -> dict[str, float | None]:
    """One contestant's line: median and p99 over every operation of every
    round (a p99 of one 400-operation sample is its fourth-slowest call, a
    lottery ticket on a busy machine; over all rounds it measures the
    tail), the rest as medians over rounds. The 8-thread line's median is
    its throughput figure (wall time ÷ lookups), a median over rounds too;
    an event-loop contestant there has no per-lookup p99."""
    row: dict[str, float | None] = {
        k: statistics.median(s[k] for s in samples) if samples[0][k] is not None else None
        for k in SAMPLE_KEYS
    }
    pooled = sorted(t for s in samples for t in s["latencies"])
    if workload != "threads":
        row["median"] = statistics.median(pooled)
    row["p99"] = percentile(pooled, 0.99) if pooled else None
    # On a busy machine a call is either quick or waited out a CPU-bound
    # neighbour's slice (milliseconds), and the p99 lands in whichever mode
    # holds the slowest 1%: the share of slow calls is the steadier figure.
    row["slow"] = sum(t > SLOW_US for t in pooled) * 1000 / len(pooled) if pooled else None
    return row


def run_one(c: Contestant, tables: Tables, workload: str, ops: int, pool: bool) -> dict[str, float]:
    if workload not in ("insert", "tx", "many"):
        return c.ask(workload, ops, pool, None)
    table = tables.fresh()
    answer = c.ask(workload, ops, pool, table)
    tables.check_and_drop(table, ops * batch_rows(pool) if workload == "many" else ops)
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default=os.environ.get("DBFLOW_TEST_POSTGRES_URL"))
    parser.add_argument("--mssql-url", default=os.environ.get("DBFLOW_TEST_MSSQL_URL"))
    parser.add_argument("--a-python", help="a second dbflow build's venv Python (A)")
    parser.add_argument("--a-name", default="A")
    # Even: with the order reversed every round, every contestant then sits
    # as often early as late (a sample's neighbours shape it: a table just
    # dropped, a server just busy).
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--levels", default=",".join(LEVELS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--backends", default="pg,ms")
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help="a subset of the contestants, for a quick look"
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    args.levels = args.levels.split(",")
    args.workloads = args.workloads.split(",")
    args.clients = args.clients.split(",")
    unknown = (
        set(args.levels) - set(LEVELS)
        | set(args.workloads) - set(WORKLOADS)
        | set(args.clients) - set(CLIENTS)
    )
    if unknown:
        parser.error(f"unknown levels or workloads: {', '.join(sorted(unknown))}")
    urls = {"pg": args.pg_url, "ms": args.mssql_url}
    backends = [b for b in args.backends.split(",") if urls.get(b)]
    if not backends:
        raise SystemExit("give --pg-url and/or --mssql-url (or DBFLOW_TEST_*_URL)")
    lines: list[tuple[Any, ...]] = []
    try:
        for backend in backends:
            lines_for(backend, urls[backend], args, lines)
    finally:
        if lines:  # what was measured, also when the run stops early
            report(lines, args)


def figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def scheduler_table(mine: list[tuple[Any, ...]], names: list[str]) -> list[str]:
    """Where the scheduler put each line's time, µs per operation (medians
    over rounds): the contestant's threads waiting for a core, the
    server's backends running and waiting for a core."""
    out = [
        "Where the time went, µs per operation (/proc/<pid>/schedstat, medians over rounds): "
        "the contestant's run-queue wait (its threads runnable, waiting for a core) / the "
        "server's CPU / the server's run-queue wait (every backend alive at the sample's end; "
        "one a pool closed meanwhile is not counted).",
        "",
        "| load | line | "
        + " | ".join(f"{n} wait / server cpu / server wait" for n in names)
        + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for level, _, workload, row in mine:
        cells = [
            "—"
            if n not in row
            else f"{row[n]['client_wait']:.0f} / {figure(row[n]['server_cpu'])} / "
            f"{figure(row[n]['server_wait'])}"
            for n in names
        ]
        out.append(f"| {level} | {LABELS[workload]} | " + " | ".join(cells) + " |")
    return [*out, ""]


def slow_table(mine: list[tuple[Any, ...]], names: list[str]) -> list[str]:
    """Per small-call line, the share of calls slower than SLOW_US."""
    out = [
        f"Calls slower than {SLOW_US / 1000:.0f} ms, per mille of every operation of every "
        "round (the small-call lines; **bold**: the fewest).",
        "",
        "| load | line | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for level, _, workload, row in mine:
        if workload not in SMALL_CALLS:
            continue
        shares = [row[n].get("slow") for n in names if n in row]
        fewest = min((v for v in shares if v is not None), default=None)
        cells = []
        for n in names:
            v = row[n].get("slow") if n in row else None
            cell = "—" if v is None else f"{v:.1f}"
            cells.append(f"**{cell}**" if v is not None and v == fewest else cell)
        out.append(f"| {level} | {LABELS[workload]} | " + " | ".join(cells) + " |")
    return [*out, ""]


def report(lines: list[tuple[Any, ...]], args: argparse.Namespace) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    out = [
        f"# Every line, quiet and loaded — {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. {args.rounds} rounds per contestant and line, "
        "interleaved (order reversed every round); per line, the median and p99 latency of "
        "every operation of every round (µs; the 8-thread line's median: wall time ÷ lookups, "
        "median over rounds) and the median over rounds of the client CPU per operation "
        "(µs, the contestant's whole process: with `pool`, the pool's work too). "
        "Load: `0`/`1`/`2` CPU burners (`while True: pass`) started by the harness, or "
        "`pool`: two threads of pure-Python work in the client's own process. "
        "**Bold**: the lowest median and the lowest p99 of the line.",
        "",
    ]
    for backend in ("pg", "ms"):
        mine = [line for line in lines if line[1] == backend]
        if not mine:
            continue
        names = list(dict.fromkeys(n for line in mine for n in line[3]))
        title = "PostgreSQL" if backend == "pg" else "SQL Server"
        out += [
            f"## {title}",
            "",
            "| load | line | " + " | ".join(f"{n} median / p99 / cpu" for n in names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for level, _, workload, row in mine:
            best_median = min(v["median"] for v in row.values())
            best_p99 = min(v["p99"] for v in row.values() if v["p99"] is not None)
            cells = []
            for n in names:
                if n not in row:
                    cells.append("—")
                    continue
                v = row[n]
                median = f"{v['median']:.0f}"
                p99 = "—" if v["p99"] is None else f"{v['p99']:.0f}"
                median = f"**{median}**" if v["median"] == best_median else median
                p99 = f"**{p99}**" if v["p99"] == best_p99 else p99
                cells.append(f"{median} / {p99} / {v['cpu']:.0f}")
            out.append(f"| {level} | {LABELS[workload]} | " + " | ".join(cells) + " |")
        out.append("")
        if any("slow" in v for line in mine for v in line[3].values()):
            out += slow_table(mine, names)
        if all("server_cpu" in v for line in mine for v in line[3].values()):
            out += scheduler_table(mine, names)
    text = "\n".join(out)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"loaded-{now:%Y%m%d-%H%M%S}.md"
    path.write_text(text)
    (results / f"loaded-{now:%Y%m%d-%H%M%S}.json").write_text(json.dumps(lines, indent=1))
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
