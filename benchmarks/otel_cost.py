"""What a span costs: `SELECT 1` through dbflow with no OpenTelemetry
provider, and with the SDK's tracer provider exporting to an exporter that
does nothing (through the SimpleSpanProcessor, and through the
BatchSpanProcessor most setups use). Issue #28 item 5. The `handoff` mode
sets the provider but stops each span where dbflow hands it to Python
(`dbflow._telemetry.emit` counts it and returns): what dbflow's side costs
before OpenTelemetry's SDK does anything.

Each mode runs in a process of its own (providers are process-wide), the
modes take turns round by round, every call's answer is checked and every
span counted. Reports the median over rounds of µs per call and the cost
of a span against the no-provider line.

    python benchmarks/otel_cost.py --url postgresql://... [--calls 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, tempfile, time
    from pathlib import Path

    mode, url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    exported = [0]
    last = []
    if mode != "off":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult,
        )

        class Nothing(SpanExporter):
            def export(self, spans):
                exported[0] += len(spans)
                last[:] = spans[-1:]
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        processor = SimpleSpanProcessor if mode == "simple" else BatchSpanProcessor
        provider.add_span_processor(processor(Nothing()))
        trace.set_tracer_provider(provider)
    import dbflow

    if mode == "handoff":
        from dbflow import _telemetry

        def counted(*_args):
            exported[0] += 1

        _telemetry.emit = counted
    root = tempfile.mkdtemp()
    Path(root, ".env.bench").write_text(f"BENCH_GLOBAL_B_CONNECTION_STRING={url}\\n")
    db = dbflow.DatabaseManager("b", config=dbflow.ConfigManager("bench", envs_dir=root))
    for _ in range(200):
        db.execute_query("SELECT 1 AS one")
    if mode != "off":
        provider.force_flush()
    exported[0] = 0
    start = time.perf_counter()
    for _ in range(calls):
        if db.execute_query("SELECT 1 AS one") != [{"one": 1}]:
            raise SystemExit("wrong answer")
    took = time.perf_counter() - start
    sdk = None
    if mode != "off":
        provider.force_flush()
        if exported[0] != calls:
            raise SystemExit(f"{exported[0]} spans exported for {calls} calls")
    if mode in ("batch", "simple"):
        # The SDK's own share: the same span (name, kind, attributes, its
        # times given) made and ended by hand, as often, in this process.
        (span,) = last
        tracer = provider.get_tracer("floor")
        attributes = dict(span.attributes)
        start = time.perf_counter()
        for _ in range(calls):
            tracer.start_span(
                span.name, kind=span.kind, attributes=attributes, start_time=time.time_ns()
            ).end(end_time=time.time_ns())
        sdk = (time.perf_counter() - start) / calls * 1e6
        provider.force_flush()
    print(json.dumps({"us_per_call": took / calls * 1e6, "sdk_span_us": sdk}))
    """
)

MODES = ("off", "handoff", "batch", "simple")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("DBFLOW_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--python", default=sys.executable, help="the Python of the build to measure"
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url or set DBFLOW_TEST_POSTGRES_URL")
    samples: dict[str, list[float]] = {m: [] for m in MODES}
    sdk_spans: dict[str, list[float]] = {m: [] for m in MODES}
    for round_ in range(args.rounds):
        order = MODES if round_ % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            done = subprocess.run(
                [args.python, "-c", CHILD, mode, args.url, str(args.calls)],
                capture_output=True,
                text=True,
                check=True,
            )
            said = json.loads(done.stdout.strip().splitlines()[-1])
            samples[mode].append(said["us_per_call"])
            if said["sdk_span_us"] is not None:
                sdk_spans[mode].append(said["sdk_span_us"])
    base = statistics.median(samples["off"])
    print(f"SELECT 1 x {args.calls}, {args.rounds} rounds, median µs per call")
    print(
        "| mode | µs per call | span cost µs | of the SELECT 1 line "
        "| the SDK's own span µs | dbflow's part µs |"
    )
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        median = statistics.median(samples[mode])
        spread = f"(samples {min(samples[mode]):.1f}–{max(samples[mode]):.1f})"
        if mode == "off":
            print(f"| {mode} | {median:.1f} {spread} | — | — | — | — |")
            continue
        cost = median - base
        share = f"| {mode} | {median:.1f} {spread} | {cost:.1f} | {cost / base * 100:.1f}% "
        if not sdk_spans[mode]:
            print(share + "| — | — |")
            continue
        sdk = statistics.median(sdk_spans[mode])
        print(share + f"| {sdk:.1f} | {cost - sdk:.1f} |")


if __name__ == "__main__":
    main()
