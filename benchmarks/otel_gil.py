"""What a traced call costs when another Python thread is busy: `SELECT 1`
through dbflow with the SDK's tracer provider (BatchSpanProcessor, an
exporter that does nothing) while a thread of the same process runs pure
Python, as a Prefect thread runner's tasks do. Every take of the GIL then
waits for the busy thread to let go (up to the 5 ms switch interval), so
the number of takes per call shows in the latency. Issue #28.

Builds take turns round by round, each in a process of its own; every
answer is checked and every span counted. Reports per build the medians
over rounds of each sample's median and p90 latency.

    python benchmarks/otel_gil.py --url postgresql://... \\
        --python BUILD_A_VENV/bin/python --python BUILD_B_VENV/bin/python [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import textwrap

CHILD = textwrap.dedent(
    """
    import json, statistics, sys, tempfile, threading, time
    from pathlib import Path

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor, SpanExporter, SpanExportResult,
    )

    url, calls = sys.argv[1], int(sys.argv[2])
    exported = [0]

    class Nothing(SpanExporter):
        def export(self, spans):
            exported[0] += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Nothing()))
    trace.set_tracer_provider(provider)
    import dbflow

    root = tempfile.mkdtemp()
    Path(root, ".env.bench").write_text(f"BENCH_GLOBAL_B_CONNECTION_STRING={url}\\n")
    db = dbflow.DatabaseManager("b", config=dbflow.ConfigManager("bench", envs_dir=root))
    for _ in range(50):
        db.execute_query("SELECT 1 AS one")
    provider.force_flush()
    exported[0] = 0
    stop = False

    def busy():
        n = 0
        while not stop:
            n += 1

    worker = threading.Thread(target=busy)
    worker.start()
    took = []
    for _ in range(calls):
        start = time.perf_counter()
        if db.execute_query("SELECT 1 AS one") != [{"one": 1}]:
            raise SystemExit("wrong answer")
        took.append((time.perf_counter() - start) * 1e6)
    stop = True
    worker.join()
    provider.force_flush()
    if exported[0] != calls:
        raise SystemExit(f"{exported[0]} spans exported for {calls} calls")
    took.sort()
    print(json.dumps({"median": statistics.median(took), "p90": took[int(0.9 * len(took))]}))
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("DBFLOW_TEST_POSTGRES_URL"))
    parser.add_argument("--python", action="append", required=True, help="a build's Python")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url or set DBFLOW_TEST_POSTGRES_URL")
    samples: dict[str, list[dict[str, float]]] = {p: [] for p in args.python}
    for round_ in range(args.rounds):
        order = args.python if round_ % 2 == 0 else list(reversed(args.python))
        for python in order:
            done = subprocess.run(
                [python, "-c", CHILD, args.url, str(args.calls)],
                capture_output=True,
                text=True,
                check=True,
            )
            samples[python].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"SELECT 1 x {args.calls} beside a busy Python thread, {args.rounds} rounds, µs")
    print("| build | median (per sample) | p90 (per sample) |")
    print("|---|---|---|")
    for python, got in samples.items():
        medians = [s["median"] for s in got]
        p90s = [s["p90"] for s in got]
        print(
            f"| {python} | {statistics.median(medians):.0f} "
            f"({min(medians):.0f}–{max(medians):.0f}) | {statistics.median(p90s):.0f} "
            f"({min(p90s):.0f}–{max(p90s):.0f}) |"
        )


if __name__ == "__main__":
    main()
