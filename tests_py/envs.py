"""The `.env.test` files tests write and the managers built from them,
and URL options added the way the tests add them. A module of its own (not
conftest) so test files can import it: two suites' conftest modules share
the name `conftest`.
"""

from __future__ import annotations

import itertools
import os
import urllib.parse
from pathlib import Path

from backends import Backend

import dbflow

_counter = itertools.count()


def with_options(url: str, **options: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query.extend(options.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class Env:
    """Writes `.env.test` files and builds managers against them."""

    def __init__(self, root: Path, pg_url: str) -> None:
        self.root = root
        self.pg_url = pg_url
        self.lines: list[str] = []

    def set(self, key: str, value: object) -> None:
        self.set_raw(f"TEST_GLOBAL_{key}", value)

    def set_raw(self, key: str, value: object) -> None:
        """A line of the file as written (e.g. a variable for ${...})."""
        self.lines.append(f"{key}={value}")
        (self.root / ".env.test").write_text("\n".join(self.lines) + "\n")

    def database(
        self,
        name: str | None = None,
        url: str | None = None,
        backend: Backend | None = None,
        **settings: object,
    ) -> str:
        """Configure a database (on `backend`, or `url`, default the
        PostgreSQL test server) with its own pool; returns its name."""
        name = name or f"db{next(_counter)}"
        if backend is not None:
            url = backend.url
            settings = {**backend.settings, **settings}
        app = f"dbflow_test_{name}_{os.getpid()}"
        target = with_options(url or self.pg_url, application_name=app)
        self.set(f"{name.upper()}_CONNECTION_STRING", target)
        for key, value in settings.items():
            self.set(f"{name.upper()}_{key.upper()}", value)
        return name

    def config(self, flow_name: str | None = None) -> dbflow.ConfigManager:
        return dbflow.ConfigManager(environment="test", flow_name=flow_name, envs_dir=self.root)

    def manager(self, name: str, flow_name: str | None = None) -> dbflow.DatabaseManager:
        return dbflow.DatabaseManager(name, config=self.config(flow_name))
