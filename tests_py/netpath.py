"""A network path to a real server that can die the way real ones do:
packets dropped, no reset, no FIN — a cable pulled, a firewall dropping,
a VM paused. A userspace proxy cannot fake that (its own kernel keeps
acknowledging), so the path crosses a veth pair into a network namespace:

    dbflow -> 10.x.y.2:port (relay in the namespace) -> unix socket
           -> relay on the host -> 127.0.0.1:server

``cut()`` takes the namespace's end of the veth down: everything dbflow's
kernel sends is dropped on the way, and nothing comes back. ``restore()``
brings it up again. Needs root and iproute2's ``ip``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RELAY = Path(__file__).with_name("relay.py")
_numbers = itertools.count()


def available() -> str | None:
    """Why a dead path cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "making a network namespace needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


def _ip(*args: str, namespace: str | None = None) -> None:
    inside = [] if namespace is None else ["ip", "netns", "exec", namespace]
    subprocess.run([*inside, "ip", *args], check=True, capture_output=True)


def _start(command: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError(f"relay did not start: {command}")
    return process


class DeadablePath:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        # Unique among this process's paths (a test may hold several).
        number = next(_numbers)
        tag = f"{os.getpid() % 100000}{number % 100}"
        self.namespace = f"dbflow{tag}"
        self._host_end, self._ns_end = f"dfh{tag}", f"dfn{tag}"
        subnet = f"10.{200 + os.getpid() % 50}.{number % 256}"
        self.host = f"{subnet}.2"
        self.port = 15432
        self._dir = tempfile.mkdtemp(prefix="dbflow-netpath-")
        socket_path = f"{self._dir}/relay.sock"
        self._relays: list[subprocess.Popen[str]] = []
        self.cut_at: float | None = None
        _ip("netns", "add", self.namespace)
        try:
            _ip("link", "add", self._host_end, "type", "veth", "peer", "name", self._ns_end)
            _ip("link", "set", self._ns_end, "netns", self.namespace)
            _ip("addr", "add", f"{subnet}.1/30", "dev", self._host_end)
            _ip("link", "set", self._host_end, "up")
            _ip("addr", "add", f"{self.host}/30", "dev", self._ns_end, namespace=self.namespace)
            _ip("link", "set", self._ns_end, "up", namespace=self.namespace)
            # A firewall that drops packets leaves ARP alone: with the
            # neighbour known for good, a cut link swallows packets instead
            # of failing them as "no route to host".
            mac = subprocess.run(
                ["ip", "-n", self.namespace, "-j", "link", "show", "dev", self._ns_end],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            _ip(
                "neigh", "replace", self.host, "lladdr", json.loads(mac)[0]["address"],
                "dev", self._host_end, "nud", "permanent",
            )  # fmt: skip
            self._relays.append(
                _start(
                    [
                        sys.executable,
                        str(RELAY),
                        f"unix:{socket_path}",
                        f"{target_host}:{target_port}",
                    ]
                )
            )
            self._relays.append(
                _start(
                    [
                        *("ip", "netns", "exec", self.namespace),
                        *(sys.executable, str(RELAY), f"{self.host}:{self.port}"),
                        f"unix:{socket_path}",
                    ]
                )
            )
        except BaseException:
            self.close()
            raise

    def cut(self) -> None:
        """Every packet either way is dropped from now on (`cut_at`: when)."""
        _ip("link", "set", self._ns_end, "down", namespace=self.namespace)
        self.cut_at = time.monotonic()

    def restore(self) -> None:
        _ip("link", "set", self._ns_end, "up", namespace=self.namespace)

    def close(self) -> None:
        """Idempotent: the relays go (the server sees its links end), then
        the namespace and the veth pair."""
        for relay in self._relays:
            relay.kill()
            relay.wait()
        self._relays.clear()
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self._host_end], capture_output=True)
        shutil.rmtree(self._dir, ignore_errors=True)
