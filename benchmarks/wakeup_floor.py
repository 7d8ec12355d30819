"""The floor under every client's p99 on a busy machine (issue #29).

    python benchmarks/wakeup_floor.py [--rounds 12] [--ops 3000] [--work-us 40] [--burners 2]

No database and no driver: a client process sends one byte over loopback
TCP and waits for the echo, the way psycopg and pymssql wait (`recv` on the
calling thread) or checking for it first (non-blocking reads for up to
150 µs, then `recv`), against an echo server process that spends
`--work-us` of CPU per request (a SQL Server `SELECT 1` costs Babelfish
about 40 µs), with `--burners` processes of `while True: pass` beside them.
Both ways take turns, the order reversed every round; per round it prints
the share of round trips slower than 1 ms (per mille), the median and the
p99 (µs). Each echo is checked.

What it shows on a 2-core machine with both cores busy: the share of slow
round trips swings between rounds (the scheduler's placement of client,
server and burners), whichever way the client waits. That share is what a
client's p99 at that load level rides on; see "On a busy machine" in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

CHECK_FOR_NS = 150_000
SLOW_US = 1000


def serve(port: int, work_us: float) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(64):
        until = time.perf_counter() + work_us / 1e6
        while time.perf_counter() < until:
            pass
        conn.sendall(data)


def round_trip(conn: socket.socket, byte: bytes, check_first: bool) -> bytes:
    conn.sendall(byte)
    if check_first:
        until = time.perf_counter_ns() + CHECK_FOR_NS
        while time.perf_counter_ns() < until:
            try:
                return conn.recv(64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
    return conn.recv(64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--work-us", type=float, default=40.0)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]))
        return
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(args.work_us)])
    burners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(100):
            try:
                conn = socket.create_connection(("127.0.0.1", port))
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        else:
            raise SystemExit("the echo server did not start")
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        burners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.burners)
        ]
        time.sleep(0.5)
        ways = {"recv": False, "check, then recv": True}
        rows: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
        for r in range(args.rounds):
            for way in ways if r % 2 == 0 else reversed(list(ways)):
                latencies = []
                for i in range(args.ops):
                    byte = bytes([i % 256])
                    started = time.perf_counter_ns()
                    got = round_trip(conn, byte, ways[way])
                    latencies.append((time.perf_counter_ns() - started) / 1000)
                    assert got == byte, f"echo {got!r} for {byte!r}"
                latencies.sort()
                slow = sum(t > SLOW_US for t in latencies) * 1000 / len(latencies)
                p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
                rows[way].append((slow, statistics.median(latencies), p99))
        conn.close()
    finally:
        for b in burners:
            b.kill()
        server.kill()
    print(
        f"{args.burners} burners, {args.work_us:.0f} µs of server work, "
        f"{args.ops} round trips a round"
    )
    for way, got in rows.items():
        print(f"{way}:")
        print("  slow ‰ ", " ".join(f"{s:5.1f}" for s, _, _ in got))
        print("  median ", " ".join(f"{m:5.0f}" for _, m, _ in got))
        print("  p99    ", " ".join(f"{p:5.0f}" for _, _, p in got))


if __name__ == "__main__":
    main()
