"""A migrations root with files for database `appdb` on a fresh database,
and managers for it (the `project` fixture's object)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from backends import Backend

import dbflow


class Project:
    """A migrations root with files for database `appdb`, and managers for it."""

    def __init__(self, root: Path, env, url: str, backend: Backend) -> None:  # type: ignore[no-untyped-def]
        self.root = root
        self.dir = root / "appdb"
        self.dir.mkdir(parents=True)
        self.env = env
        self.name = env.database(
            "appdb", url=url, auto_migrate="off", pool_release_grace=0, **backend.settings
        )

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.dir / name).write_text(text)

    def manager(self) -> dbflow.DatabaseManager:
        return dbflow.DatabaseManager(self.name, config=self.env.config(), migrations_dir=self.root)

    def migrate_in_processes(self, count: int) -> list[dict[str, Any]]:
        """`run_migrations()` in `count` processes started together; their reports."""
        worker = textwrap.dedent(
            f"""
            import dbflow, json, sys
            cfg = dbflow.ConfigManager("test", envs_dir={str(self.env.root)!r})
            db = dbflow.DatabaseManager("appdb", config=cfg, migrations_dir={str(self.root)!r})
            sys.stdin.readline()  # start together
            print(json.dumps(db.run_migrations()))
            """
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", worker],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            reports.append(json.loads(out))
        return reports
