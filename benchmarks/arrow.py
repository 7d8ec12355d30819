"""dbflow's Arrow results and Arrow bulk loads against the libraries a flow
would use instead: PostgreSQL reads into pyarrow / Polars / pandas, the same
from SQL Server (Babelfish over TDS), bulk loads into PostgreSQL from Arrow
and Polars, and a SQL Server → PostgreSQL transfer. Conventions as
benchmarks/run.py: every contestant once per round (interleaved), several
rounds, medians, ratio = the baseline's median ÷ the contestant's; every
sample checked outside its timed call (checksums of every column against the
server's own, `arrow_data.py`); peak RSS of each read in a fresh process
(VmHWM reset through /proc/self/clear_refs).

    scripts/bench --arrow [--rows 100000] [--rounds 3]
    python benchmarks/arrow.py --url postgresql://... [--mssql-url mssql://...]

Contestants that fail on their first call are reported with their error and
left out of the timing; one whose result differs from the server stops the
run. dbflow's Arrow contestants are skipped (with a note) until the
installed dbflow has `DatabaseManager.fetch_arrow`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import arrow_data as data  # noqa: E402
from arrow_peers import GROUPS, Ctx, Peer, all_peers, pymssql_connect  # noqa: E402


def dbflow_level() -> str:
    """'' (not installed), 'dbflow' (no Arrow API yet) or 'dbflow-arrow'."""
    try:
        import dbflow
    except ImportError:
        return ""
    return "dbflow-arrow" if hasattr(dbflow.DatabaseManager, "fetch_arrow") else "dbflow"


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


# ---- the source tables --------------------------------------------------------------


def setup_pg(ctx: Ctx) -> dict[str, int]:
    """arrow_src with ctx.rows rows (kept between runs); its checksums."""
    import psycopg

    ctx.pg_source = f"arrow_src_{ctx.rows}"
    with psycopg.connect(ctx.pg_url, autocommit=True) as conn:
        have = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ctx.pg_source,)).fetchone()
        n = conn.execute(f"SELECT count(*) FROM {ctx.pg_source}").fetchone() if have[0] else (0,)
        if n[0] != ctx.rows:
            print(f"filling {ctx.pg_source} ({ctx.rows:,} rows)", file=sys.stderr)
            conn.execute(f"DROP TABLE IF EXISTS {ctx.pg_source}")
            conn.execute(data.pg_ddl(ctx.pg_source))
            conn.execute(data.pg_fill(ctx.pg_source, ctx.rows))
            conn.execute(f"ANALYZE {ctx.pg_source}")
        return data.server_sums(conn.cursor(), ctx.pg_source, "pg")


def setup_ms(ctx: Ctx) -> dict[str, int]:
    assert ctx.ms_url
    ctx.ms_source = f"arrow_src_{ctx.rows}"
    conn = pymssql_connect(ctx.ms_url)
    conn.autocommit(True)
    cur = conn.cursor()
    cur.execute(f"SELECT OBJECT_ID('{ctx.ms_source}')")
    n = 0
    if cur.fetchone()[0] is not None:
        cur.execute(f"SELECT COUNT(*) FROM {ctx.ms_source}")
        n = cur.fetchone()[0]
    if n != ctx.rows:
        print(f"filling {ctx.ms_source} on SQL Server ({ctx.rows:,} rows)", file=sys.stderr)
        cur.execute(f"DROP TABLE IF EXISTS {ctx.ms_source}")
        cur.execute(data.tsql_ddl(ctx.ms_source))
        cur.execute(data.tsql_fill(ctx.ms_source, ctx.rows))
    sums = data.server_sums(cur, ctx.ms_source, "tsql")
    conn.close()
    return sums


def product_versions(ctx: Ctx) -> str:
    import psycopg

    with psycopg.connect(ctx.pg_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    facts = [f"PostgreSQL {pg}"]
    if ctx.ms_url:
        conn = pymssql_connect(ctx.ms_url)
        cur = conn.cursor()
        cur.execute("SELECT @@VERSION")
        version = cur.fetchone()[0]
        conn.close()
        facts.append(version.splitlines()[-1].strip())  # "PostgreSQL 16.3 ... (Babelfish 4.2.0)"
    libs = []
    for mod in ("pyarrow", "polars", "pandas", "connectorx", "adbc_driver_postgresql",
                "psycopg", "psycopg2", "sqlalchemy", "pyodbc", "pymssql", "dbflow"):  # fmt: skip
        try:
            m = __import__(mod)
            libs.append(f"{mod} {getattr(m, '__version__', getattr(m, 'version', '?'))}")
        except ImportError:
            pass
    return "; ".join(facts) + ". Libraries: " + ", ".join(libs)


# ---- one sample ---------------------------------------------------------------------


def new_target(ctx: Ctx, peer: Peer) -> str:
    import psycopg

    table = f"arrow_w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ctx.pg_url, autocommit=True) as conn:
        if peer.group == "transfer":
            conn.execute(data.pg_ddl(table, unlogged=True, naive_ts=True))
        else:
            conn.execute(f"CREATE UNLOGGED TABLE {table} (LIKE {ctx.pg_source} INCLUDING ALL)")
    return table


def written_sums(ctx: Ctx, table: str, drop: bool = True) -> dict[str, int]:
    import psycopg

    with psycopg.connect(ctx.pg_url, autocommit=True) as conn:
        sums = data.server_sums(conn.cursor(), table, "pg")
        if drop:
            conn.execute(f"DROP TABLE {table}")
    return sums


def cpu_seconds() -> float:
    """CPU time this process has used (all threads: user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: Client CPU seconds per sample, by contestant: on a 2-core machine the
#: server's share bounds the wall time of a load, while what the client
#: spends is what a busy worker pays.
CPU: dict[str, list[float]] = {}


def sample(ctx: Ctx, peer: Peer, want: dict[str, int]) -> tuple[float, set[str]]:
    """One timed call of `peer`, then its check (outside the timing)."""
    gc.collect()
    if peer.group in ("pg_load", "transfer"):
        table = new_target(ctx, peer)
        if peer.form == "dicts":
            ctx.source_dicts = ctx.source.to_pylist()
        try:
            cpu = cpu_seconds()
            started = time.perf_counter()
            peer.fn(ctx, table)
            elapsed = time.perf_counter() - started
            CPU.setdefault(peer.key, []).append(cpu_seconds() - cpu)
        except BaseException:
            written_sums(ctx, table)  # drops the table
            raise
        finally:
            ctx.source_dicts = None
        got = written_sums(ctx, table)
        data.compare(f"{peer.name} ({peer.form})", got, want)
        return elapsed, set()
    cpu = cpu_seconds()
    started = time.perf_counter()
    result = peer.fn(ctx)
    elapsed = time.perf_counter() - started
    CPU.setdefault(peer.key, []).append(cpu_seconds() - cpu)
    norm = data.normalise(result)
    del result
    data.compare(f"{peer.name} ({peer.form})", data.client_sums(norm), want)
    return elapsed, norm.notes


def peak_memory(args: argparse.Namespace, index: int) -> int:
    """Peak RSS growth (KiB) of one read, in a fresh process (as run.py)."""
    cmd = [sys.executable, __file__, "--probe", str(index), "--url", args.url,
           "--rows", str(args.rows)] + (["--mssql-url", args.mssql_url] if args.mssql_url else [])  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        print(f"memory probe {index} failed: {done.stderr[-500:]}", file=sys.stderr)
        return -1
    return int(done.stdout.strip().splitlines()[-1])


def probe(args: argparse.Namespace) -> None:
    """The child of peak_memory: set up, warm the connection, reset VmHWM, read once."""
    peer = all_peers()[args.probe]
    ctx = Ctx(args.url, args.mssql_url, args.rows)
    ctx.pg_source = ctx.ms_source = f"arrow_src_{args.rows}"
    import pyarrow  # noqa: F401  (imported before the baseline, as by every contestant)

    if peer.form == "Polars":
        import polars  # noqa: F401
    import pandas  # noqa: F401

    small = Ctx(args.url, args.mssql_url, args.rows)
    small.opened = ctx.opened  # the same connections, warmed on a tiny query
    small.pg_source = small.ms_source = f"(SELECT * FROM arrow_src_{args.rows} WHERE id < 10) w"
    peer.fn(small)
    gc.collect()
    before = vm_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    kept = peer.fn(ctx)
    grown = vm_kib("VmHWM") - before
    assert len(kept) == args.rows, f"{peer.name}: {len(kept)} rows"
    print(grown)


# ---- the run ------------------------------------------------------------------------


def runnable(peers: list[Peer], level: str, ctx: Ctx, args: argparse.Namespace) -> list[Peer]:
    """Leave out what cannot run here, saying why."""
    out = []
    for p in peers:
        if p.needs == "dbflow-arrow" and level != "dbflow-arrow":
            print(f"skipped: {p.name} ({p.form}) — the installed dbflow has no "
                  "DatabaseManager.fetch_arrow yet", file=sys.stderr)  # fmt: skip
            SKIPPED[p.key] = "dbflow's Arrow API not in this build"
        elif p.needs == "dbflow" and not level:
            SKIPPED[p.key] = "dbflow not installed"
        elif p.group in ("ms_read", "transfer") and not ctx.ms_url:
            continue
        elif "sqlalchemy" in p.name and p.group == "pg_load" and ctx.rows > args.slow_rows:
            SKIPPED[p.key] = (
                f"left out above {args.slow_rows:,} rows (`--slow-rows`): one INSERT per row"
            )
        else:
            out.append(p)
    return out


SKIPPED: dict[str, str] = {}
NOTES = {  # what normalise() had to do, as the footnotes say it
    "amount: numeric as float64 (lossy)": "numeric(12,2) returned as float64 (lossy in general; "
    "exact to the cent for these values, checked after rounding to cents)",
    "payload: json-parsed": "jsonb returned parsed (dicts); re-serialised for the check",
    "qty: float64 (NaN for NULL)": "the NULL-able bigint returned as float64 with NaN for NULL "
    "(exact below 2**53)",
    "ref: uuid-objects": "uuid returned as uuid.UUID objects",
    "payload: JSON re-serialised compactly": "jsonb returned re-serialised without spaces "
    '(`{"i":0,...}`), not the server\'s text; compared after parsing',
    "amount: arrow.opaque": "numeric returned as text (`arrow.opaque` extension), exact",
}
FAILED: dict[str, str] = {}


def warm_up(ctx: Ctx, peers: list[Peer], want: dict[str, dict[str, int]]) -> list[Peer]:
    """Each contestant's first call, checked: one that raises is reported and
    left out; one that returns wrong values stops the run (Mismatch)."""
    kept = []
    for p in peers:
        try:
            sample(ctx, p, want[p.group])
            kept.append(p)
        except data.Mismatch:
            raise
        except Exception as e:
            message = f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
            print(f"does not run: {p.name} ({p.form}) — {message}", file=sys.stderr)
            FAILED[p.key] = message
    return kept


def measure(ctx: Ctx, peers: list[Peer], want: dict[str, dict[str, int]], rounds: int) -> dict:
    times: dict[str, list[float]] = {}
    notes: dict[str, set[str]] = {}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
        for group in GROUPS:
            for p in (p for p in peers if p.group == group):  # interleaved
                elapsed, seen = sample(ctx, p, want[group])
                times.setdefault(p.key, []).append(elapsed)
                notes.setdefault(p.key, set()).update(seen)
    return {"times": times, "notes": notes}


def report(ctx: Ctx, all_of: list[Peer], measured: dict, memory: dict[str, int],
           rounds: int, facts: str) -> str:  # fmt: skip
    now = dt.datetime.now(dt.timezone.utc)
    lines = [
        f"# dbflow Arrow benchmarks — {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.platform()}. "
        f"{facts}. {rounds} rounds, interleaved; medians; **ratio** = the baseline's median ÷ "
        "this contestant's (higher is faster). Every sample checked against the server's "
        "checksums of every column.",
    ]
    footnotes: list[str] = []
    for group, title in GROUPS.items():
        peers = [p for p in all_of if p.group == group]
        if group in ("ms_read", "transfer") and not ctx.ms_url:
            continue
        base = next((p for p in peers if p.baseline), None)
        if base is None:  # a group left out (--groups)
            continue
        ref = measured["times"].get(base.key)
        lines += ["", f"## {title.format(n=ctx.rows)}", "",
                  "| contestant | into / from | median | min–max | ratio | client CPU | peak RSS growth | notes |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for p in peers:
            key = p.key
            t = measured["times"].get(key)
            name = p.name + (" — **baseline**" if p.baseline else "")
            if not t:
                why = SKIPPED.get(key) or (
                    f"does not run: `{FAILED[key]}`" if key in FAILED else "—"
                )
                lines.append(f"| {name} | {p.form} | — | — | — | — | — | {why} |")
                continue
            marks = []
            seen = [NOTES.get(n, n) for n in sorted(measured["notes"].get(key, ()))]
            for note in seen + ([p.how] if p.how else []):
                if note not in footnotes:
                    footnotes.append(note)
                marks.append(f"[{footnotes.index(note) + 1}]")
            med = statistics.median(t)
            ratio = f"**{statistics.median(ref) / med:.2f}x**" if ref else "—"
            mem = memory.get(key)
            mem_text = f"{mem / 1024:.0f} MB" if mem and mem > 0 else "—"
            cpu = CPU.get(key)
            cpu_text = f"{statistics.median(cpu) * 1000:.0f} ms" if cpu else "—"
            lines.append(
                f"| {name} | {p.form} | {med * 1000:.0f} ms | {min(t) * 1000:.0f}–{max(t) * 1000:.0f} ms "
                f"| {ratio} | {cpu_text} | {mem_text} | {' '.join(marks)} |"
            )
    if footnotes:
        lines += ["", "Notes:", ""] + [f"{i + 1}. {n}" for i, n in enumerate(footnotes)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("DBFLOW_TEST_POSTGRES_URL"))
    parser.add_argument("--mssql-url", default=os.environ.get("DBFLOW_TEST_MSSQL_URL"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--slow-rows", type=int, default=100_000,
                        help="run polars.write_database(engine='sqlalchemy') up to this many rows")  # fmt: skip
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS probes")
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url or set DBFLOW_TEST_POSTGRES_URL")
    if args.probe is not None:
        probe(args)
        return 0
    level = dbflow_level()
    if level != "dbflow-arrow":
        print("note: the installed dbflow has no DatabaseManager.fetch_arrow: dbflow's Arrow "
              "contestants are skipped", file=sys.stderr)  # fmt: skip
    ctx = Ctx(args.url, args.mssql_url, args.rows)
    want = {"pg_read": setup_pg(ctx)}
    want["pg_load"] = want["pg_read"]
    ctx.source = data.arrow_source(args.rows)
    data.compare("the loads' source Arrow table", data.client_sums(data.normalise(ctx.source)),
                 want["pg_read"])  # fmt: skip
    import polars as pl

    ctx.source_polars = pl.from_arrow(ctx.source)
    if ctx.ms_url:
        want["ms_read"] = want["transfer"] = setup_ms(ctx)
        data.compare("the SQL Server source table", want["ms_read"], want["pg_read"])
    peers = all_peers()
    chosen = [p for p in peers if not args.groups or p.group in args.groups.split(",")]
    chosen = warm_up(ctx, runnable(chosen, level, ctx, args), want)
    CPU.clear()  # the warm-up calls are not samples
    memory = {}
    if not args.no_memory:
        for p in chosen:
            if p.group in ("pg_read", "ms_read"):
                memory[p.key] = peak_memory(args, peers.index(p))
    measured = measure(ctx, chosen, want, args.rounds)
    ctx.close()
    shown = [p for p in peers if (not args.groups or p.group in args.groups.split(","))]
    text = report(ctx, shown, measured, memory, args.rounds, product_versions(ctx))
    stamp = f"{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    out = HERE / "results" / f"arrow-{stamp}.md"
    out.write_text(text)
    (HERE / "results" / "arrow-latest.md").write_text(text)
    (HERE / "results" / f"arrow-{stamp}.json").write_text(json.dumps(measured["times"], indent=1))
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
