"""Stored procedures and table-valued parameters on SQL Server (issue #25):

1. chatty — a procedure that PRINTs 10,000 lines and returns one small
   result set, through `execute_query("EXEC ...")`, dbflow at revision A
   (before the message work: the driver dropped messages) against dbflow
   at revision B (messages collected, 50 logged per call, all kept), as
   benchmarks/ab.py does it: each build in its own venv and process, A and B
   interleaved, the order swapped every round; with a silent control (the
   same loop without PRINT) for the noise floor. Plus B's `call_procedure`
   of it with the `dbflow` logger at INFO, counting the records (51).
2. procs — a procedure with two inputs, two OUTPUT parameters, a RETURN
   code and two result sets: dbflow `call_procedure` against python-tds
   `callproc`, pyodbc (FreeTDS ODBC) with the usual T-SQL wrapper and
   pymssql with the same wrapper, N calls per sample, every call's outputs,
   return code and rows checked.
3. tvp — 100,000 rows (int, nvarchar(40), decimal(12,2), some NULLs) into a
   procedure through dbflow `TableValue` against the OPENJSON workaround
   (one JSON nvarchar(max) parameter unpacked into a table variable) through
   dbflow and pyodbc; and 1,000 rows of values Babelfish's native TVPs
   handle, adding dbflow with `table_values=native`. The procedure returns
   the server's own count, id sum and per-row checks of every value.

Conventions of benchmarks/mssql.py and arrow.py: every contestant in a
process of its own, driven over a pipe, once per round (interleaved),
several rounds, medians; **ratio** = the baseline's median ÷ the
contestant's; every sample checked outside its timed call; results in
benchmarks/results/procedures-<UTC>.md (+ procedures-latest.md) and the raw
samples in procedures-<UTC>.json, with the machine's facts.

    python benchmarks/procedures.py --mssql-url mssql://... \\
        --a-python /work/scratch/ab-venv-d14f07c/bin/python --a-name d14f07c \\
        [--b-python PY --b-name HEAD] [--rounds 7] [--ab-rounds 21] \\
        [--groups chatty,procs,tvp]

The parent needs pymssql (setup and facts); a worker needs only its
contestant's library. `--a-python` is a venv holding only dbflow at the
revision before the message work (scripts/bench-ab builds such venvs:
/work/scratch/ab-venv-<sha>); without it the chatty group is skipped. B
defaults to this interpreter's dbflow.

Babelfish 4.2 mishandles native TVPs (strings pasted unescaped, decimals
garbled beside NULLs, more than 1,000 rows crashed the server): the native
line is only ever sent 1,000 rows of ints, ASCII strings without
apostrophes and decimals without NULLs, and only when the server is
Microsoft SQL Server is it sent the 100,000 rows as well.
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
import urllib.parse
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

CHATTY_LINES = 10_000
CHATTY_CALLS = 5  # calls per sample
PROC_CALLS = 500  # calls per sample
TVP_SIZES = [1_000, 100_000]

SETUP = [
    "DROP PROCEDURE IF EXISTS dbo.bench_chatty",
    "DROP PROCEDURE IF EXISTS dbo.bench_silent",
    "DROP PROCEDURE IF EXISTS dbo.bench_proc",
    "DROP PROCEDURE IF EXISTS dbo.bench_tvp_sum",
    "DROP TYPE IF EXISTS dbo.bench_tvp_row",
    """CREATE PROCEDURE dbo.bench_chatty @n int AS
BEGIN
    SET NOCOUNT ON;
    DECLARE @i int = 0;
    WHILE @i < @n
    BEGIN
        SET @i = @i + 1;
        PRINT 'line ' + CAST(@i AS nvarchar(10));
    END
    SELECT @i AS printed;
END""",
    # The control: the same loop and string work, nothing sent.
    """CREATE PROCEDURE dbo.bench_silent @n int AS
BEGIN
    SET NOCOUNT ON;
    DECLARE @i int = 0;
    DECLARE @s nvarchar(20);
    WHILE @i < @n
    BEGIN
        SET @i = @i + 1;
        SET @s = 'line ' + CAST(@i AS nvarchar(10));
    END
    SELECT @i AS printed;
END""",
    """CREATE PROCEDURE dbo.bench_proc @a int, @b nvarchar(40),
    @total int OUTPUT, @label nvarchar(60) OUTPUT AS
BEGIN
    SET NOCOUNT ON;
    SET @total = @a * 2;
    SET @label = @b + N'!';
    SELECT @a AS a, @b AS b;
    SELECT n, n * @a AS m FROM (VALUES (1), (2), (3)) AS v(n) ORDER BY n;
    RETURN @a % 7;
END""",
    "CREATE TYPE dbo.bench_tvp_row AS TABLE "
    "(id int NOT NULL, name nvarchar(40) NULL, amount decimal(12, 2) NULL)",
    # The server's own checks: count, id sum, and every value against its
    # row's id (name = @prefix + the id in six digits, amount = id*37 % 1e6 / 100).
    """CREATE PROCEDURE dbo.bench_tvp_sum @rows dbo.bench_tvp_row READONLY,
    @prefix nvarchar(10) AS
BEGIN
    SET NOCOUNT ON;
    SELECT COUNT(*) AS n, SUM(CAST(id AS bigint)) AS ids,
        COUNT(name) AS named,
        SUM(CASE WHEN name = @prefix + RIGHT('000000' + CAST(id AS varchar(10)), 6)
            THEN 1 ELSE 0 END) AS names_ok,
        COUNT(amount) AS amounts,
        SUM(CASE WHEN amount * 100 = (id * 37) % 1000000 THEN 1 ELSE 0 END) AS amounts_ok,
        SUM(amount) AS amount
    FROM @rows;
    RETURN 0;
END""",
]
TEARDOWN = SETUP[:5]

OPENJSON_BATCH = (
    "SET NOCOUNT ON; DECLARE @t dbo.bench_tvp_row; "
    "INSERT INTO @t (id, name, amount) SELECT id, name, amount FROM OPENJSON({j}) "
    "WITH (id int '$.id', name nvarchar(40) '$.name', amount decimal(12, 2) '$.amount'); "
    "EXEC dbo.bench_tvp_sum @rows = @t, @prefix = {p};"
)
WRAPPER = (
    "SET NOCOUNT ON; DECLARE @rc int, @total int, @label nvarchar(60); "
    "EXEC @rc = dbo.bench_proc @a = {a}, @b = {b}, @total = @total OUTPUT, "
    "@label = @label OUTPUT; SELECT @rc AS rc, @total AS total, @label AS label;"
)


def parts(url: str) -> dict[str, Any]:
    u = urllib.parse.urlsplit(url)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 1433,
        "user": urllib.parse.unquote(u.username or ""),
        "password": urllib.parse.unquote(u.password or ""),
        "database": u.path.lstrip("/") or "master",
    }


def with_option(url: str, option: str) -> str:
    return url + ("&" if "?" in url else "?") + option


# ---- the data and the checks --------------------------------------------------------


def tvp_rows(n: int, babelfish_native_safe: bool) -> tuple[list[dict[str, Any]], str]:
    """The rows and their name prefix. Safe rows (for Babelfish's native TVPs):
    no apostrophes, no NULL decimals."""
    prefix = "name " if babelfish_native_safe else "o'name "
    rows = [
        {
            "id": i,
            "name": None if i % 10 == 0 else f"{prefix}{i:06d}",
            "amount": None
            if i % 7 == 0 and not babelfish_native_safe
            else Decimal(i * 37 % 1_000_000) / 100,
        }
        for i in range(1, n + 1)
    ]
    return rows, prefix


def tvp_expected(rows: list[dict[str, Any]]) -> dict[str, Any]:
    named = sum(r["name"] is not None for r in rows)
    amounts = [r["amount"] for r in rows if r["amount"] is not None]
    return {
        "n": len(rows),
        "ids": sum(r["id"] for r in rows),
        "named": named,
        "names_ok": named,
        "amounts": len(amounts),
        "amounts_ok": len(amounts),
        "amount": sum(amounts),
    }


def check_tvp(got: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    got = {k.lower(): v for k, v in got.items()}
    got["amount"] = Decimal(str(got["amount"]))
    want = tvp_expected(rows)
    if got != want:
        raise AssertionError(f"the server saw {got}, not {want}")


def proc_expected(i: int) -> tuple[Any, ...]:
    """One call's (rc, total, label, first set, second set)."""
    b = f"name {i}"
    return (i % 7, 2 * i, b + "!", [(i, b)], [(1, i), (2, 2 * i), (3, 3 * i)])


def check_procs(got: list[tuple[Any, ...]], start: int) -> None:
    assert len(got) == PROC_CALLS, f"{len(got)} calls answered, not {PROC_CALLS}"
    for k, answer in enumerate(got):
        want = proc_expected(start + k)
        if answer != want:
            raise AssertionError(f"call {k}: {answer!r}, not {want!r}")


# ---- the contestants (in the worker) --------------------------------------------------


def dbflow_manager(url: str) -> Any:
    import tempfile

    import dbflow

    settings = {"connection_string": url, "pool_size": 5, "max_overflow": 10}
    config = dbflow.ConfigManager("bench", envs_dir=tempfile.mkdtemp())
    return dbflow.DatabaseManager(
        "procbench", config=config.with_settings("procbench", {**settings, "auto_migrate": "off"})
    )


class Counter:
    """A logging handler that drops every record and counts it."""

    def __init__(self) -> None:
        import logging

        class Handler(logging.Handler):
            count = 0

            def emit(self, record: logging.LogRecord) -> None:
                Handler.count += 1

        self.handler = Handler(logging.INFO)
        self.logger = logging.getLogger("dbflow")

    def __enter__(self) -> Counter:
        import logging

        type(self.handler).count = 0
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *_: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)

    @property
    def count(self) -> int:
        return type(self.handler).count


class DbflowWorker:
    def __init__(self, url: str) -> None:
        self.url = url
        self.db = dbflow_manager(url)
        self.native: Any = None

    def hello(self) -> dict[str, Any]:
        import hashlib

        import dbflow
        import dbflow._native

        native = Path(dbflow._native.__file__)
        return {
            "dbflow": str(Path(dbflow.__file__).parent),
            "prefix": sys.prefix,
            "native_sha256": hashlib.sha256(native.read_bytes()).hexdigest()[:12],
            "call_procedure": hasattr(self.db, "call_procedure"),
        }

    def warm(self) -> None:
        self.db.execute_query("EXEC dbo.bench_silent @n = 10")

    # group 1 ------------------------------------------------------------------------
    def exec_loop(self, proc: str) -> tuple[float, list[Any]]:
        sql = f"EXEC dbo.{proc} @n = {CHATTY_LINES}"
        got = []
        started = time.perf_counter()
        for _ in range(CHATTY_CALLS):
            got.append(self.db.execute_query(sql))
        elapsed = time.perf_counter() - started
        for rows in got:
            assert [{k.lower(): v for k, v in r.items()} for r in rows] == [
                {"printed": CHATTY_LINES}
            ], rows
        return elapsed, got

    def silent(self) -> dict[str, Any]:
        return {"elapsed": self.exec_loop("bench_silent")[0]}

    def chatty(self) -> dict[str, Any]:
        return {"elapsed": self.exec_loop("bench_chatty")[0]}

    def chatty_info(self) -> dict[str, Any]:
        with Counter() as counter:
            elapsed, _ = self.exec_loop("bench_chatty")
        return {"elapsed": elapsed, "records": counter.count / CHATTY_CALLS}

    def chatty_call_procedure(self) -> dict[str, Any]:
        """B only: call_procedure with the dbflow logger at INFO."""
        with Counter() as counter:
            started = time.perf_counter()
            result = self.db.call_procedure("dbo.bench_chatty", {"n": CHATTY_LINES})
            elapsed = time.perf_counter() - started
        assert result.result_sets == [[{"printed": CHATTY_LINES}]], result
        assert len(result.messages) == CHATTY_LINES, len(result.messages)
        assert result.messages[0] == "line 1" and result.messages[-1] == f"line {CHATTY_LINES}"
        return {"elapsed": elapsed, "records": counter.count, "messages": len(result.messages)}

    # group 2 ------------------------------------------------------------------------
    def procs(self, start: int) -> tuple[float, list[tuple[Any, ...]]]:
        out = {"total": "int", "label": "nvarchar(60)"}
        call = self.db.call_procedure
        results = []
        started = time.perf_counter()
        for i in range(start, start + PROC_CALLS):
            results.append(call("dbo.bench_proc", {"a": i, "b": f"name {i}"}, output=out))
        elapsed = time.perf_counter() - started
        got = [
            (
                r.return_value,
                r.output["total"],
                r.output["label"],
                [(row["a"], row["b"]) for row in r.result_sets[0]],
                [(row["n"], row["m"]) for row in r.result_sets[1]],
            )
            for r in results
        ]
        assert all(len(r.result_sets) == 2 for r in results)
        return elapsed, got

    def procs_wrapper(self, start: int) -> tuple[float, list[tuple[Any, ...]]]:
        """The T-SQL wrapper the peers send, through execute_query_sets: what
        call_procedure's own batch costs beside it."""
        sql = WRAPPER.format(a=":a", b=":b")
        sets = self.db.execute_query_sets
        results = []
        started = time.perf_counter()
        for i in range(start, start + PROC_CALLS):
            results.append(sets(sql, {"a": i, "b": f"name {i}"}))
        elapsed = time.perf_counter() - started
        got = []
        for first, second, last in results:
            rc, total, label = last[0]["rc"], last[0]["total"], last[0]["label"]
            got.append(
                (
                    rc,
                    total,
                    label,
                    [(row["a"], row["b"]) for row in first],
                    [(row["n"], row["m"]) for row in second],
                )
            )
        return elapsed, got

    # group 3 ------------------------------------------------------------------------
    def tvp(self, rows: list[dict[str, Any]], prefix: str, native: bool) -> tuple[float, Any]:
        import dbflow

        db = self.db
        if native:
            if self.native is None:
                self.native = dbflow_manager(with_option(self.url, "table_values=native"))
            db = self.native
        started = time.perf_counter()
        result = db.call_procedure(
            "dbo.bench_tvp_sum",
            {"rows": dbflow.TableValue("dbo.bench_tvp_row", rows), "prefix": prefix},
        )
        elapsed = time.perf_counter() - started
        assert result.return_value == 0 and len(result.result_sets) == 1, result
        return elapsed, result.result_sets[0][0]

    def openjson(self, rows: list[dict[str, Any]], prefix: str) -> tuple[float, Any]:
        sql = OPENJSON_BATCH.format(j=":j", p=":p")
        started = time.perf_counter()
        got = self.db.execute_query(sql, {"j": json.dumps(rows, default=str), "p": prefix})
        elapsed = time.perf_counter() - started
        assert len(got) == 1, got
        return elapsed, got[0]


class DbapiWorker:
    """pyodbc (FreeTDS ODBC), pymssql or python-tds: one connection, autocommit."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        c = parts(url)
        if kind == "pyodbc":
            import pyodbc

            odbc = (
                f"DRIVER={{FreeTDS}};SERVER={c['host']};PORT={c['port']};"
                f"DATABASE={c['database']};UID={c['user']};PWD={c['password']};"
                "TDS_Version=7.4;ClientCharset=UTF-8"
            )
            self.conn = pyodbc.connect(odbc, autocommit=True)
            self.mark = "?"
        elif kind == "pymssql":
            import pymssql

            self.conn = pymssql.connect(
                server=c["host"], port=c["port"], user=c["user"], password=c["password"],
                database=c["database"], autocommit=True,
            )  # fmt: skip
            self.mark = "%s"
        else:
            import pytds

            self.conn = pytds.connect(
                dsn=c["host"], port=c["port"], user=c["user"], password=c["password"],
                database=c["database"], autocommit=True,
            )  # fmt: skip
            self.mark = "%s"

    def hello(self) -> dict[str, Any]:
        mod = __import__({"python-tds": "pytds"}.get(self.kind, self.kind))
        return {"version": str(getattr(mod, "__version__", getattr(mod, "version", "?")))}

    def warm(self) -> None:
        cur = self.conn.cursor()
        cur.execute("EXEC dbo.bench_silent @n = 10")
        cur.fetchall()

    def procs(self, start: int) -> tuple[float, list[tuple[Any, ...]]]:
        if self.kind == "python-tds":
            return self._callproc(start)
        sql = WRAPPER.format(a=self.mark, b=self.mark)
        cur = self.conn.cursor()
        raw = []
        started = time.perf_counter()
        for i in range(start, start + PROC_CALLS):
            cur.execute(sql, (i, f"name {i}"))
            first = cur.fetchall()
            cur.nextset()
            second = cur.fetchall()
            cur.nextset()
            rc, total, label = cur.fetchone()
            raw.append((rc, total, label, first, second))
        elapsed = time.perf_counter() - started
        return elapsed, [
            (rc, total, label, [tuple(r) for r in a], [tuple(r) for r in b])
            for rc, total, label, a, b in raw
        ]

    def _callproc(self, start: int) -> tuple[float, list[tuple[Any, ...]]]:
        """python-tds `callproc` (an RPC call). The OUTPUT parameters go first
        in the dict: its `get_proc_outputs()` indexes a list as long as the
        outputs by each one's position among all parameters (IndexError
        when an input comes first; python-tds 1.17)."""
        import pytds

        cur = self.conn.cursor()
        raw = []
        started = time.perf_counter()
        for i in range(start, start + PROC_CALLS):
            cur.callproc(
                "dbo.bench_proc",
                {
                    "@total": pytds.output(param_type="int"),
                    "@label": pytds.output(param_type="nvarchar(60)"),
                    "@a": i,
                    "@b": f"name {i}",
                },
            )
            first = cur.fetchall()
            cur.nextset()
            second = cur.fetchall()
            while cur.nextset():
                pass
            total, label = cur.get_proc_outputs()
            raw.append((cur.return_value, total, label, first, second))
        elapsed = time.perf_counter() - started
        return elapsed, [
            (rc, total, label, [tuple(r) for r in a], [tuple(r) for r in b])
            for rc, total, label, a, b in raw
        ]

    def openjson(self, rows: list[dict[str, Any]], prefix: str) -> tuple[float, Any]:
        sql = OPENJSON_BATCH.format(j=self.mark, p=self.mark)
        cur = self.conn.cursor()
        started = time.perf_counter()
        cur.execute(sql, (json.dumps(rows, default=str), prefix))
        names = [d[0] for d in cur.description]
        got = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        elapsed = time.perf_counter() - started
        assert len(got) == 1, got
        return elapsed, got[0]


def serve(role: str, url: str) -> None:
    """The worker: answer one JSON line per request, each sample checked here."""
    player: Any = DbflowWorker(url) if role == "dbflow" else DbapiWorker(role, url)
    print(json.dumps(player.hello()), flush=True)
    player.warm()
    datasets: dict[tuple[int, bool], tuple[list[dict[str, Any]], str]] = {}
    for line in sys.stdin:
        ask = json.loads(line)
        task = ask["task"]
        try:
            if task in ("silent", "chatty", "chatty_info", "chatty_call_procedure"):
                answer = getattr(player, task)()
            elif task == "procs":
                fn = player.procs_wrapper if ask.get("wrapper") else player.procs
                elapsed, got = fn(ask["start"])
                check_procs(got, ask["start"])
                answer = {"elapsed": elapsed}
            else:  # tvp / openjson
                key = (ask["rows"], ask["safe"])
                if key not in datasets:
                    datasets[key] = tvp_rows(*key)
                rows, prefix = datasets[key]
                if task == "tvp":
                    elapsed, got = player.tvp(rows, prefix, ask["native"])
                else:
                    elapsed, got = player.openjson(rows, prefix)
                check_tvp(got, rows)
                answer = {"elapsed": elapsed}
        except Exception as e:  # reported to the parent, which stops the run
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


# ---- the parent -----------------------------------------------------------------------


class Worker:
    """One contestant's process, driven over a pipe."""

    def __init__(self, name: str, python: str, role: str, url: str) -> None:
        self.name = name
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen(
            [python, __file__, "--worker", role, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.hello = self.answer("start-up")
        where = self.hello.get("dbflow")
        if where and not where.startswith(self.hello["prefix"] + os.sep):
            raise RuntimeError(f"{name}: dbflow from {where}, not from its venv {python}")

    def answer(self, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker died during {what}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name} {what}: {answer['error']}")
        return answer

    def ask(self, task: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"task": task, **kw}) + "\n")
        self.proc.stdin.flush()
        return self.answer(task)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def admin(url: str) -> Any:
    import pymssql

    c = parts(url)
    conn = pymssql.connect(
        server=c["host"], port=c["port"], user=c["user"], password=c["password"],
        database=c["database"], autocommit=True,
    )  # fmt: skip
    return conn


def run_sql(url: str, statements: list[str]) -> None:
    conn = admin(url)
    cur = conn.cursor()
    for sql in statements:
        cur.execute(sql)
    conn.close()


def server_version(url: str) -> str:
    conn = admin(url)
    cur = conn.cursor()
    cur.execute("SELECT @@VERSION")
    version = str(cur.fetchone()[0])
    conn.close()
    return version


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


#: samples[group][line][contestant] = seconds per round
Samples = dict[str, dict[str, dict[str, list[float]]]]


def run_chatty(
    url: str, args: argparse.Namespace, samples: Samples, facts: dict[str, Any]
) -> list[Worker]:
    a = Worker(args.a_name, args.a_python, "dbflow", url)
    b = Worker(args.b_name, args.b_python, "dbflow", url)
    workers = [a, b]
    if not b.hello["call_procedure"]:
        raise RuntimeError(f"B ({args.b_python}) has no call_procedure: not the message work")
    group = samples.setdefault("chatty", {})
    records: dict[str, list[float]] = {}
    for r in range(args.ab_rounds):
        print(f"chatty round {r + 1}/{args.ab_rounds}", file=sys.stderr, flush=True)
        for task in ("silent", "chatty", "chatty_info"):
            for w in workers if r % 2 == 0 else workers[::-1]:
                answer = w.ask(task)
                group.setdefault(task, {}).setdefault(w.name, []).append(answer["elapsed"])
                if "records" in answer:
                    records.setdefault(w.name, []).append(answer["records"])
    facts["records_per_execute_query"] = {k: sorted(set(v)) for k, v in records.items()}
    facts["call_procedure_chatty"] = b.ask("chatty_call_procedure")
    return workers


#: (name, worker role, the T-SQL wrapper through dbflow's execute_query_sets?)
PROC_CONTESTANTS = [
    ("pyodbc (FreeTDS), T-SQL wrapper + nextset()", "pyodbc", False),
    ("pymssql, T-SQL wrapper + nextset()", "pymssql", False),
    ("python-tds callproc (RPC)", "python-tds", False),
    ("dbflow execute_query_sets, T-SQL wrapper", "dbflow", True),
    ("dbflow call_procedure", "dbflow", False),
]


def run_procs(url: str, args: argparse.Namespace, samples: Samples) -> list[Worker]:
    workers = [Worker(name, args.b_python, role, url) for name, role, _ in PROC_CONTESTANTS]
    wrapped = {name: wrapper for name, _, wrapper in PROC_CONTESTANTS}
    group = samples.setdefault("procs", {}).setdefault("call", {})
    start = 1
    for r in range(args.rounds):
        print(f"procs round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for w in workers:
            answer = w.ask("procs", start=start, wrapper=wrapped[w.name])
            group.setdefault(w.name, []).append(answer["elapsed"])
            start += PROC_CALLS
    return workers


def tvp_lines(native_ok_at: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(line label, contestant, worker role, request) per size, baseline first."""
    out = []
    for n in TVP_SIZES:
        safe = n <= 1_000  # Babelfish's native TVPs: only safe values, at most 1,000 rows
        line = f"{n:,} rows" + (" (values native TVPs handle on Babelfish)" if safe else "")
        ask = {"rows": n, "safe": safe}
        out.append((line, "dbflow execute_query + OPENJSON", "dbflow", {"task": "openjson", **ask}))
        out.append((line, "pyodbc (FreeTDS) + OPENJSON", "pyodbc", {"task": "openjson", **ask}))
        out.append(
            (line, "dbflow TableValue (default)", "dbflow", {"task": "tvp", "native": False, **ask})
        )
        if n <= native_ok_at:
            out.append(
                (
                    line,
                    "dbflow TableValue, table_values=native",
                    "dbflow",
                    {"task": "tvp", "native": True, **ask},
                )
            )
    return out


def run_tvp(url: str, args: argparse.Namespace, samples: Samples, babelfish: bool) -> list[Worker]:
    roles = {"dbflow": Worker("dbflow", args.b_python, "dbflow", url)}
    roles["pyodbc"] = Worker("pyodbc", args.b_python, "pyodbc", url)
    lines = tvp_lines(1_000 if babelfish else max(TVP_SIZES))
    group = samples.setdefault("tvp", {})
    for r in range(args.rounds):
        print(f"tvp round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for line, name, role, ask in lines:
            answer = roles[role].ask(ask["task"], **{k: v for k, v in ask.items() if k != "task"})
            group.setdefault(line, {}).setdefault(name, []).append(answer["elapsed"])
    return list(roles.values())


# ---- the report -----------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def spread(values: list[float]) -> str:
    return f"{ms(min(values))}–{ms(max(values))}"


def ratio_table(lines: dict[str, dict[str, list[float]]], per: str) -> list[str]:
    out = [
        f"| line | contestant | median{per} | min–max | ratio |",
        "|---|---|---|---|---|",
    ]
    for line, by in lines.items():
        base = statistics.median(next(iter(by.values())))
        for k, (name, values) in enumerate(by.items()):
            med = statistics.median(values)
            label = f"{name} — **baseline**" if k == 0 else name
            out.append(
                f"| {line} | {label} | {ms(med)} ms | {spread(values)} ms | **{base / med:.2f}x** |"
            )
    return out


def report(samples: Samples, facts: dict[str, Any], args: argparse.Namespace) -> str:
    from ab import quartiles, verdict  # benchmarks/ab.py: the A/B verdict's rules

    lines = [
        f"# dbflow stored procedures and TVPs — {facts['when']} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPython "
        f"{platform.python_version()}, {platform.platform()}. Server: {facts['server']}. "
        f"Libraries: {facts['libraries']}. {args.rounds} rounds, interleaved; medians; "
        "**ratio** = the baseline's median ÷ this contestant's (higher is faster). Load "
        f"average (1, 5, 15 min) before: {facts['load_before']}, after: {facts['load_after']}.",
        "",
    ]
    if "chatty" in samples:
        a, b = args.a_name, args.b_name
        hello = facts["builds"]
        lines += [
            f"## 1. A chatty procedure ({CHATTY_LINES:,} PRINTs): A/B, {args.ab_rounds} rounds",
            "",
            f"**A** = `{a}` ({hello[a]}), **B** = `{b}` ({hello[b]}). Each sample: "
            f'{CHATTY_CALLS} calls of `execute_query("EXEC dbo.bench_<proc> @n = '
            f"{CHATTY_LINES}\")`, each answer checked (`[{{'printed': {CHATTY_LINES}}}]`). "
            "`silent` is the same loop without PRINT (the noise floor: the builds' "
            "difference with no messages); `chatty` with logging as Python leaves it "
            "(the `dbflow` logger at WARNING); `chatty, dbflow logger at INFO` with a "
            "handler that counts and drops every record. **per-round B/A** = the median "
            "of the rounds' own ratios and their interquartile range (benchmarks/ab.py's "
            "verdict).",
            "",
            "| workload | A median | A min–max | B median | B min–max | B/A | "
            "per-round B/A [IQR] | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        labels = {
            "silent": "silent control (loop, no PRINT)",
            "chatty": f"chatty ({CHATTY_LINES:,} PRINTs), logging untouched",
            "chatty_info": f"chatty ({CHATTY_LINES:,} PRINTs), dbflow logger at INFO",
        }
        for task, by in samples["chatty"].items():
            ta, tb = by[a], by[b]
            q1, q2, q3 = quartiles([y / x for x, y in zip(ta, tb, strict=True)])
            lines.append(
                f"| {labels[task]} | {ms(statistics.median(ta))} | {spread(ta)} "
                f"| {ms(statistics.median(tb))} | {spread(tb)} "
                f"| {statistics.median(tb) / statistics.median(ta):.3f} "
                f"| {q2:.3f} [{q1:.3f}–{q3:.3f}] | {verdict(q1, q3, args.ab_rounds)} |"
            )
        cp = facts["call_procedure_chatty"]
        lines += [
            "",
            "Log records per `execute_query` of the chatty procedure, `dbflow` logger at "
            f"INFO: {facts['records_per_execute_query']}. B's `call_procedure` of it at "
            f"INFO: **{cp['records']} records** ({cp['messages']:,} messages kept on "
            f"`result.messages`), {ms(cp['elapsed'])} ms (one call).",
            "",
        ]
    if "procs" in samples:
        lines += [
            f"## 2. Procedure call vs peers ({PROC_CALLS} calls per sample)",
            "",
            "`dbo.bench_proc @a int, @b nvarchar(40), @total int OUTPUT, @label "
            "nvarchar(60) OUTPUT`: RETURN `@a % 7`, two result sets (1 row, 3 rows). "
            "Every call's return code, both outputs and both result sets checked.",
            "",
            *ratio_table(samples["procs"], f" ({PROC_CALLS} calls)"),
            "",
            "pymssql runs the wrapper: its `callproc` (RPC) returns the OUTPUT "
            "parameters as `None` on Babelfish (and `_mssql`'s procedure API a return "
            "code of 0 for 5). python-tds's `callproc` gets its OUTPUT parameters first "
            "in a dict: `get_proc_outputs()` raises IndexError when an input comes first.",
            "",
        ]
    if "tvp" in samples:
        lines += [
            "## 3. Table-valued parameter vs the OPENJSON workaround",
            "",
            "`dbo.bench_tvp_sum @rows dbo.bench_tvp_row READONLY, @prefix`: the type is "
            "`(id int, name nvarchar(40) NULL, amount decimal(12,2) NULL)`; the procedure "
            "returns the count, the id sum and per-row checks of every name and amount "
            "against its id, compared with the rows sent. 100,000 rows: names "
            "`o'name 000001` (apostrophes), every tenth NULL, every seventh amount NULL. "
            "1,000 rows: names `name 000001`, every tenth NULL, no NULL amount (what "
            "Babelfish's native TVPs handle). OPENJSON: `json.dumps(rows, default=str)` "
            "inside the timed call, one nvarchar(max) parameter, `INSERT INTO @t SELECT "
            "... FROM OPENJSON(@j) WITH (...)`, then the same EXEC, in one batch.",
            "",
            *ratio_table(samples["tvp"], " (one call)"),
            "",
            "The rows hold no double quote or backslash: Babelfish's OPENJSON returns "
            'JSON escapes as they are (`\\"` for `"`), so the workaround would store '
            "such strings altered. Babelfish's native TVPs are never sent more than "
            "1,000 rows (the server crashed on more).",
            "",
        ]
    return "\n".join(lines)


def library_versions(python: str) -> str:
    code = (
        "import importlib.metadata as m\n"
        "for p in ('dbflow', 'pyodbc', 'pymssql', 'python-tds'):\n"
        "    try: print(p, m.version(p))\n"
        "    except Exception: pass\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return ", ".join(out.stdout.split("\n")[:-1])


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        serve(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mssql-url", default=os.environ.get("DBFLOW_TEST_MSSQL_URL"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ab-rounds", type=int, default=21, help="rounds of the chatty A/B")
    parser.add_argument("--groups", default="chatty,procs,tvp")
    parser.add_argument("--a-python", help="the venv Python of dbflow before the message work")
    parser.add_argument("--a-name", default="A")
    parser.add_argument("--b-python", default=sys.executable)
    parser.add_argument("--b-name", default="B")
    args = parser.parse_args()
    if not args.mssql_url:
        parser.error("give --mssql-url or set DBFLOW_TEST_MSSQL_URL")
    groups = args.groups.split(",")
    if "chatty" in groups and not args.a_python:
        print("skipped: chatty (no --a-python)", file=sys.stderr)
        groups.remove("chatty")
    url = args.mssql_url
    version = server_version(url)
    babelfish = "babelfish" in version.lower()
    facts: dict[str, Any] = {
        "when": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}",
        "server": version.splitlines()[-1 if babelfish else 0].strip(),
        "libraries": library_versions(args.b_python),
        "load_before": load(),
        "builds": {},
    }
    samples: Samples = {}
    workers: list[Worker] = []
    run_sql(url, SETUP)
    try:
        if "chatty" in groups:
            workers += run_chatty(url, args, samples, facts)
            for w in workers:
                facts["builds"][w.name] = f"`_native` sha256 {w.hello['native_sha256']}"
        if "procs" in groups:
            workers += run_procs(url, args, samples)
        if "tvp" in groups:
            workers += run_tvp(url, args, samples, babelfish)
    finally:
        for w in workers:
            w.close()
        run_sql(url, TEARDOWN)
    facts["load_after"] = load()
    text = report(samples, facts, args)
    stamp = f"{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    out = HERE / "results" / f"procedures-{stamp}.md"
    out.write_text(text)
    (HERE / "results" / "procedures-latest.md").write_text(text)
    raw = {"facts": facts, "samples": samples}
    (HERE / "results" / f"procedures-{stamp}.json").write_text(json.dumps(raw, indent=1) + "\n")
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
