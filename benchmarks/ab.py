"""dbflow at revision A against dbflow at revision B, on benchmarks/run.py's
workloads for its `Dbflow` contestant: did a change make any line slower?

Each build runs in a Python process of its own (its own venv, that build's
wheel installed), driven over a pipe; A and B are interleaved (A B A B ...)
workload by workload for N rounds, and every sample is checked exactly as
run.py checks it (reads in the worker with `run.check_read`, writes here,
by the server, with `run.check_written`).

    scripts/bench-ab REV_A REV_B [--rounds N]     # builds, venvs, server, then this
    python benchmarks/ab.py --url postgresql://... A_PYTHON B_PYTHON \\
        [--a-name 447968b --b-name main] [--rounds N] [--workloads select1,pk]

This process needs psycopg (the checks), never dbflow; a worker needs only
dbflow. Writes a Markdown table to stdout and benchmarks/results/ab-<UTC>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (benchmarks/run.py: the workloads, data and checks)

# ---- the worker: one build of dbflow, in its own venv -------------------------


def workload_data(workload: str) -> Any:
    """The rows a write workload is given, built as run.measure builds them."""
    data: Any = run.rows(run.SIZES[workload], offset=run.WRITE_OFFSET)
    if workload == "bulk_tuples":
        data = [run.one_tuple(r) for r in data]
    if workload == "update_many":
        data = [{"id": r["id"], "label": f"new {r['id']}"} for r in data]
    return data


def serve(url: str) -> None:
    """Answer one JSON line per request: the workload's time, its read checked."""
    import dbflow
    import dbflow._native

    native = Path(dbflow._native.__file__)
    hello = {
        "dbflow": str(Path(dbflow.__file__).parent),
        "prefix": sys.prefix,
        "native_sha256": hashlib.sha256(native.read_bytes()).hexdigest()[:12],
    }
    print(json.dumps(hello), flush=True)
    player = run.Dbflow(url)
    player.select1(20)  # warm up as run.measure does: connections open, statements prepared
    player.pk(20)
    for line in sys.stdin:
        ask = json.loads(line)
        workload, table = ask["workload"], ask["table"]
        try:
            fn = getattr(player, workload)
            if workload in run.WRITES:
                data = workload_data(workload)
                elapsed, _ = run.timed(lambda fn=fn, t=table, d=data: fn(t, d))
            elif workload in ("fetch", "fetch_tuples"):
                elapsed, got = run.timed(fn)
                run.check_read(workload, player.name, got)
                del got
            else:
                elapsed, got = run.timed(lambda fn=fn, w=workload: fn(run.SIZES[w]))
                run.check_read(workload, player.name, got)
            answer: dict[str, Any] = {"elapsed": elapsed}
        except Exception as e:  # reported to the parent, which stops the run
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


# ---- the parent: drives both workers, checks every write ----------------------


class Worker:
    """One build's process, driven over a pipe (as benchmarks/mssql.py does)."""

    def __init__(self, name: str, python: str, url: str) -> None:
        self.name = name
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen(
            [python, __file__, "--worker", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.hello = self.answer("start-up")
        where = self.hello["dbflow"]
        if not where.startswith(self.hello["prefix"] + os.sep):
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

    def run(self, workload: str, table: str | None = None) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"workload": workload, "table": table}) + "\n")
        self.proc.stdin.flush()
        return float(self.answer(workload)["elapsed"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(url: str, workers: list[Worker], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per workload, per build, one time per round; interleaved, the order
    swapped every round (A B, B A, A B, ...) so that neither build always
    runs first."""
    import psycopg

    results: dict[str, dict[str, list[float]]] = {
        w: {p.name: [] for p in workers} for w in run.WORKLOADS
    }
    with psycopg.connect(url, autocommit=True) as admin:
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            for workload in run.WORKLOADS:
                for p in workers if r % 2 == 0 else workers[::-1]:  # A B, then B A: no seat bias
                    if workload in run.WRITES:
                        size = run.SIZES[workload]
                        table = run.fresh_table(url)
                        if workload == "update_many":
                            run.seed(admin, table, run.rows(size, offset=run.WRITE_OFFSET))
                        elapsed = p.run(workload, table)
                        run.check_written(admin, table, size, relabelled=workload == "update_many")
                        run.drop(url, table)
                    else:
                        elapsed = p.run(workload)
                    results[workload][p.name].append(elapsed)
    return results


# ---- the verdict -----------------------------------------------------------------


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median, third quartile (the inclusive method: with
    three values, the midpoints of min to median and median to max)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def verdict(q1: float, q3: float, rounds: int) -> str:
    few = f", only {rounds} rounds" if rounds < 5 else ""
    if q1 <= 1.0 <= q3:
        return "same within noise"
    if q1 > 1.0:
        return f"**B slower** (≥ {(q1 - 1) * 100:.1f}%{few})"
    return f"B faster (≥ {(1 - q3) * 100:.1f}%{few})"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(results: dict[str, dict[str, list[float]]], workers: list[Worker], rounds: int) -> str:
    a, b = workers
    lines = [
        f"# dbflow A/B — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"**A** = `{a.name}`, **B** = `{b.name}`. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; {rounds} rounds, "
        "A and B interleaved workload by workload (A first in odd rounds, B first in even ones), each build in its own process; every "
        "sample checked as benchmarks/run.py checks it.",
        "",
        "Times in ms: median (min–max over rounds). **B/A** = median B ÷ median A. "
        "**per-round B/A** = the median of the rounds' own ratios (B's time ÷ A's, same "
        "round) and their interquartile range [Q1–Q3]. Verdict: *same within noise* when "
        "that range contains 1.0; otherwise B slower (Q1 > 1) or faster (Q3 < 1), by at "
        "least the stated margin. With few rounds the range is rough: use 9 or more "
        "before believing a small difference.",
        "",
        "| workload | A median | A min–max | B median | B min–max | B/A | per-round B/A [IQR] "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload in run.WORKLOADS:
        ta, tb = results[workload][a.name], results[workload][b.name]
        if not ta:
            continue
        q1, q2, q3 = quartiles([y / x for x, y in zip(ta, tb, strict=True)])
        lines.append(
            f"| {run.LABELS[workload]} | {ms(statistics.median(ta))} | {ms(min(ta))}–{ms(max(ta))} "
            f"| {ms(statistics.median(tb))} | {ms(min(tb))}–{ms(max(tb))} "
            f"| {statistics.median(tb) / statistics.median(ta):.3f} "
            f"| {q2:.3f} [{q1:.3f}–{q3:.3f}] | {verdict(q1, q3, rounds)} |"
        )
    lines += ["", "Builds:", ""]
    for label, w in (("A", a), ("B", b)):
        h = w.hello
        lines.append(f"- {label} `{w.name}`: {h['dbflow']} (`_native` sha256 {h['native_sha256']})")
    if a.hello["native_sha256"] == b.hello["native_sha256"]:
        lines.append("- (A and B load the same `_native` binary)")
    lines += ["", "Samples (ms, round by round):", ""]
    for workload in run.WORKLOADS:
        if results[workload][a.name]:
            row = {w.name: " ".join(ms(t) for t in results[workload][w.name]) for w in workers}
            lines.append(f"- {workload}: A {row[a.name]} · B {row[b.name]}")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        serve(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a_python", help="the Python of build A's venv")
    parser.add_argument("b_python", help="the Python of build B's venv")
    parser.add_argument("--a-name", default="A")
    parser.add_argument("--b-name", default="B")
    parser.add_argument("--url", default=os.environ.get("DBFLOW_TEST_POSTGRES_URL"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(run.WORKLOADS)}")
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url or set DBFLOW_TEST_POSTGRES_URL")
    if args.a_name == args.b_name:
        parser.error("A and B need different names")
    if args.workloads:
        chosen = args.workloads.split(",")
        unknown = set(chosen) - set(run.WORKLOADS)
        if unknown:
            parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        run.WORKLOADS[:] = [w for w in run.WORKLOADS if w in chosen]
    run.setup_schema(args.url)
    workers: list[Worker] = []
    try:
        workers.append(Worker(args.a_name, args.a_python, args.url))
        workers.append(Worker(args.b_name, args.b_python, args.url))
        results = measure(args.url, workers, args.rounds)
    finally:
        for w in workers:
            w.close()
    text = report(results, workers, args.rounds)
    out = HERE / "results" / f"ab-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
