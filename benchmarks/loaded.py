"""Small calls on a busy machine (issue #29): dbflow against psycopg 3
(PostgreSQL) and pymssql (SQL Server), and optionally a second dbflow build,
with 0, 1 and 2 cores kept busy by CPU burners this harness starts and
stops, and with two threads of pure-Python work in the client's own process
("pool", as Prefect's thread runner has them: they take the GIL whenever
the caller lets go of it).

    python benchmarks/loaded.py --pg-url postgresql://... --mssql-url mssql://... \\
        [--a-python VENV_A/bin/python --a-name main] [--rounds 5] [--ops 400]

Each contestant is a process of its own (this script's interpreter for the
peers and dbflow, `--a-python` for a second dbflow build), driven over a
pipe; per load level, backend and workload the contestants take turns
(the order reversed every round). A sample is `--ops` calls, each timed
and its answer checked (`SELECT 1` returns 1; `SELECT :v` returns v). The
report gives, per line, the medians over rounds of each sample's median
and p99 latency (µs per call) and of the client CPU the contestant's
process burnt per call (`time.process_time`), to `results/loaded-<UTC>.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

WORKLOADS = ("select1", "param")
# Cores kept busy by burner processes; "pool": two threads of pure-Python
# work in the client's own process, as Prefect's thread runner has them
# (they hold the GIL whenever the caller lets go of it).
LEVELS: tuple[int | str, ...] = (0, 1, 2, "pool")


def python_work(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2000))


def serve(kind: str, pg_url: str, mssql_url: str) -> None:
    """A contestant: answer one JSON request per line with its sample."""
    call: dict[str, Any] = {}
    if kind == "dbflow":
        import dbflow

        os.environ["BENCH_GLOBAL_PG_CONNECTION_STRING"] = pg_url
        os.environ["BENCH_GLOBAL_MS_CONNECTION_STRING"] = mssql_url
        dbs = {
            backend: dbflow.DatabaseManager(backend, environment="bench")
            for backend in ("pg", "ms")
        }
        call["select1"] = lambda b, i: dbs[b].execute_query("SELECT 1 AS v")[0]["v"]
        call["param"] = lambda b, i: dbs[b].execute_query("SELECT :v AS v", {"v": i})[0]["v"]
    else:
        import psycopg
        import pymssql

        pg = psycopg.connect(pg_url, autocommit=True)
        parts = mssql_parts(mssql_url)
        ms = pymssql.connect(autocommit=True, **parts)

        def peer(backend: str, sql: str, args: Any) -> Any:
            cursor = pg.cursor() if backend == "pg" else ms.cursor()
            cursor.execute(sql, args)
            return cursor.fetchall()[0][0]

        call["select1"] = lambda b, i: peer(b, "SELECT 1 AS v", None)
        call["param"] = lambda b, i: peer(
            b, "SELECT %s::int AS v" if b == "pg" else "SELECT %d AS v", (i,)
        )
    import threading

    for line in sys.stdin:
        backend, workload, ops, pool = json.loads(line)
        expected = (lambda i: 1) if workload == "select1" else (lambda i: i)
        stop = threading.Event()
        workers = [threading.Thread(target=python_work, args=(stop,)) for _ in range(2 * pool)]
        for w in workers:
            w.start()
        latencies = []
        cpu = time.process_time()
        for i in range(ops):
            started = time.perf_counter()
            got = call[workload](backend, i)
            latencies.append(time.perf_counter() - started)
            if got != expected(i):
                raise SystemExit(f"{kind} {backend} {workload}: {got!r} for call {i}")
        cpu = time.process_time() - cpu
        stop.set()
        for w in workers:
            w.join()
        latencies.sort()
        print(
            json.dumps(
                {
                    "median": statistics.median(latencies) * 1e6,
                    "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e6,
                    "cpu": cpu / ops * 1e6,
                }
            ),
            flush=True,
        )


def mssql_parts(url: str) -> dict[str, Any]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return {
        "server": u.hostname,
        "port": u.port or 1433,
        "user": u.username,
        "password": u.password,
        "database": u.path.lstrip("/") or "master",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default=os.environ.get("DBFLOW_TEST_POSTGRES_URL"))
    parser.add_argument("--mssql-url", default=os.environ.get("DBFLOW_TEST_MSSQL_URL"))
    parser.add_argument("--a-python", help="a second dbflow build's venv Python (A)")
    parser.add_argument("--a-name", default="A")
    parser.add_argument("--b-name", default="dbflow")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=400)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.pg_url, args.mssql_url)
        return
    if not (args.pg_url and args.mssql_url):
        raise SystemExit("give --pg-url and --mssql-url (or DBFLOW_TEST_*_URL)")
    me = str(Path(__file__).resolve())
    urls = ["--pg-url", args.pg_url, "--mssql-url", args.mssql_url]
    contestants = {args.b_name: [sys.executable, me, "--serve", "dbflow", *urls]}
    if args.a_python:
        contestants[args.a_name] = [args.a_python, me, "--serve", "dbflow", *urls]
    contestants["peer"] = [sys.executable, me, "--serve", "peer", *urls]
    procs = {
        name: subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for name, cmd in contestants.items()
    }

    def ask(name: str, request: list[Any]) -> dict[str, float]:
        proc = procs[name]
        assert proc.stdin and proc.stdout
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline()
        if not answer:
            raise SystemExit(f"{name} stopped")
        return dict(json.loads(answer))

    lines = []
    names = list(contestants)
    try:
        for level in LEVELS:
            pool = level == "pool"
            burners = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(0 if pool else int(level))
            ]
            time.sleep(0.5)
            load = os.getloadavg()[0]
            try:
                for backend in ("pg", "ms"):
                    for workload in WORKLOADS:
                        samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
                        for name in names:
                            ask(name, [backend, workload, 50, pool])  # warm
                        for r in range(args.rounds):
                            for name in names if r % 2 == 0 else reversed(names):
                                samples[name].append(ask(name, [backend, workload, args.ops, pool]))
                        row = {
                            name: {
                                k: statistics.median(s[k] for s in samples[name])
                                for k in ("median", "p99", "cpu")
                            }
                            for name in names
                        }
                        lines.append((level, backend, workload, row, load))
                        print(level, backend, workload, json.dumps(row), flush=True)
            finally:
                for b in burners:
                    b.kill()
    finally:
        for p in procs.values():
            p.kill()
    report(lines, names, args)


def report(lines: list[Any], names: list[str], args: argparse.Namespace) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    peer = {"pg": "psycopg 3", "ms": "pymssql"}
    out = [
        f"# Small calls, quiet and loaded — {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. {args.rounds} rounds of {args.ops} calls per "
        "contestant and line, interleaved; medians over rounds of each sample's median "
        "and p99 (µs per call) and client CPU (µs per call; with `pool`, the "
        "threads' work is counted too). Load: CPU burners started by the harness "
        "(`while True: pass`), or `pool`: two threads of pure-Python work in the "
        "client's own process.",
        "",
        "| load | backend | workload | "
        + " | ".join(f"{n if n != 'peer' else 'peer'} median / p99 / cpu" for n in names)
        + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for level, backend, workload, row, _load in lines:
        cells = [
            f"{row[n]['median']:.1f} / {row[n]['p99']:.1f} / {row[n]['cpu']:.1f}" for n in names
        ]
        out.append(f"| {level} | {backend} | {workload} | " + " | ".join(cells) + " |")
    out += ["", f"peer: {peer['pg']} on pg, {peer['ms']} on ms (values written into the SQL)."]
    text = "\n".join(out) + "\n"
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"loaded-{now:%Y%m%d-%H%M%S}.md"
    path.write_text(text)
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
