"""Exactly once or an error: a connection reset at any point of a call never
runs a statement twice and never returns rows of an abandoned attempt.

A real TCP proxy (faults.FaultProxy) sits between dbflow and each real
server and resets the link at a chosen byte; what ran is counted on the
server over a direct connection. Every test first checks that its fault
really fired.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import Backend
from faults import DOWN, UP, FaultProxy

import dbflow

BIG_ROWS = 20_000
PAD = "x" * 200
_names = itertools.count()


def through(proxy: FaultProxy, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{proxy.port}"))


class Scene:
    """The tables a test writes and reads, a manager through the proxy, and
    counts taken on the server over a direct connection."""

    def __init__(self, env: Any, backend: Backend, direct: dbflow.DatabaseManager) -> None:
        self.backend = backend
        self.direct = direct
        self.suffix = f"{os.getpid()}_{next(_names)}"
        self.marks = f"marks_{self.suffix}"
        self.big = f"big_{self.suffix}"
        self.load = f"load_{self.suffix}"
        direct.execute_query(backend.ddl(f"CREATE TABLE {self.marks} (v {{int}})"))
        direct.execute_query(
            backend.ddl(f"CREATE TABLE {self.load} (id {{int}} PRIMARY KEY, pad {{text}})")
        )
        self.proxy = FaultProxy(urllib.parse.urlsplit(backend.url).port or 0)
        self.env = env

    def make_big(self) -> None:
        self.direct.execute_query(
            self.backend.ddl(f"CREATE TABLE {self.big} (id {{int}} PRIMARY KEY, pad {{text}})")
        )
        self.direct.bulk_insert(self.big, [(i, PAD) for i in range(1, BIG_ROWS + 1)])

    def manager(self, **settings: object) -> dbflow.DatabaseManager:
        """A manager whose every connection goes through the proxy."""
        name = self.env.database(
            url=through(self.proxy, self.backend.url),
            **{
                **self.backend.settings,
                "pool_size": 1,
                "max_overflow": 0,
                "pool_release_grace": 0,
                **settings,
            },
        )
        return self.env.manager(name)

    def async_manager(self, db: dbflow.DatabaseManager) -> dbflow.AsyncDatabaseManager:
        return dbflow.AsyncDatabaseManager(db.database_name, config=self.env.config())

    def count(self, table: str, where: str = "1 = 1") -> int:
        rows = self.direct.execute_query(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}")
        return int(rows[0]["n"])

    def write_then_read(self, v: int) -> str:
        """One statement (PostgreSQL) or batch (SQL Server) that inserts a
        mark and then returns every row of the big table."""
        select = f"SELECT id, pad FROM {self.big} ORDER BY id"
        if self.backend.name == "postgresql":
            return f"WITH w AS (INSERT INTO {self.marks} (v) VALUES ({v})) {select}"
        return f"INSERT INTO {self.marks} (v) VALUES ({v}); {select}"

    def close(self) -> None:
        self.proxy.close()
        for table in (self.marks, self.big, self.load):
            self.direct.execute_query(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture
def scene(env: Any, backend: Backend, bdb: dbflow.DatabaseManager) -> Iterator[Scene]:
    s = Scene(env, backend, bdb)
    yield s
    s.close()


def assert_pool_recovered(db: dbflow.DatabaseManager) -> None:
    """The broken connection is gone; the next call works on a fresh one."""
    assert db.execute_query("SELECT 1 AS one") == [{"one": 1}]
    status = db.get_pool_status()
    assert status["checked_out"] == 0, status
    assert status["checked_in"] == 1, status
    assert status["overflow"] == 0, status


def test_a_link_reset_while_idle_runs_the_call_once_on_a_fresh_connection(
    scene: Scene,
) -> None:
    db = scene.manager()
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_all()
        rows = db.execute_query(f"INSERT INTO {scene.marks} (v) VALUES (1)")
        assert rows == []
        assert scene.count(scene.marks, "v = 1") == 1
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_request_lost_with_the_link_is_an_error_and_never_sent_again(
    scene: Scene,
) -> None:
    """The proxy swallows the request and resets: dbflow cannot know the
    server never saw it, so it must say the statement may have run — and
    not send it again (a second attempt would have gone through)."""
    db = scene.manager()
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(0, UP)
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            db.execute_query(f"INSERT INTO {scene.marks} (v) VALUES (1)")
        assert scene.proxy.fired == 1
        assert info.value.may_have_run
        assert "may have run" in str(info.value)
        assert scene.count(scene.marks) == 0
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_reset_before_the_first_answer_byte_runs_it_at_most_once(scene: Scene) -> None:
    db = scene.manager()
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(0, DOWN)
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            db.execute_query(f"INSERT INTO {scene.marks} (v) VALUES (1)")
        assert scene.proxy.fired == 1
        assert info.value.may_have_run
        assert scene.count(scene.marks) <= 1
        assert_pool_recovered(db)
    finally:
        db.dispose()


@pytest.mark.parametrize("call", ["execute_query", "execute_query_with_retry"])
def test_a_reset_mid_result_is_an_error_with_no_rows_and_no_second_run(
    scene: Scene, call: str
) -> None:
    """The defect this suite was written for: on SQL Server the batch ran
    twice and rows of the broken attempt were returned with the second's."""
    scene.make_big()
    db = scene.manager()
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(1_000_000, DOWN)
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            getattr(db, call)(scene.write_then_read(2))
        assert scene.proxy.fired == 1
        assert info.value.may_have_run
        assert "may have run" in str(info.value)
        assert scene.count(scene.marks, "v = 2") <= 1
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_reset_mid_result_with_parameters(scene: Scene) -> None:
    scene.make_big()
    db = scene.manager()
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(1_000_000, DOWN)
        with pytest.raises(dbflow.DatabaseConnectionError):
            db.execute_query(
                f"SELECT id, pad FROM {scene.big} WHERE id >= :low ORDER BY id", {"low": 1}
            )
        assert scene.proxy.fired == 1
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_reset_mid_iteration_raises_after_a_clean_prefix(scene: Scene) -> None:
    scene.make_big()
    db = scene.manager()
    seen: list[int] = []
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(1_000_000, DOWN)
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            for row in db.iter_query(scene.write_then_read(3), batch_size=500):
                seen.append(int(row["id"]))
        assert scene.proxy.fired == 1
        assert info.value.may_have_run
        # What arrived is a prefix of the one attempt: nothing repeated.
        assert seen == list(range(1, len(seen) + 1))
        assert len(seen) < BIG_ROWS
        assert scene.count(scene.marks, "v = 3") <= 1
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_reset_mid_bulk_insert_writes_nothing(scene: Scene) -> None:
    db = scene.manager()
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(500_000, UP)
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            db.bulk_insert(scene.load, ({"id": i, "pad": PAD} for i in range(50_000)))
        assert scene.proxy.fired == 1
        assert info.value.may_have_run
        assert scene.count(scene.load) == 0
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_reset_mid_execute_many_writes_nothing(scene: Scene) -> None:
    db = scene.manager()
    try:
        db.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(300_000, UP)
        with pytest.raises(dbflow.DatabaseConnectionError):
            db.execute_many(
                f"INSERT INTO {scene.load} (id, pad) VALUES (:id, :pad)",
                [{"id": i, "pad": PAD} for i in range(20_000)],
            )
        assert scene.proxy.fired == 1
        assert scene.count(scene.load) == 0
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_transaction_whose_link_resets_between_statements_saves_nothing(
    scene: Scene,
) -> None:
    """The reset arrives while the transaction is idle, so the next
    statement's write fails before any byte leaves: it was not sent, the
    transaction is lost, and nothing is moved to another connection."""
    db = scene.manager()
    try:
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            with db.transaction() as tx:
                tx.execute_query(f"INSERT INTO {scene.marks} (v) VALUES (4)")
                scene.proxy.reset_all()
                tx.execute_query(f"INSERT INTO {scene.marks} (v) VALUES (5)")
        assert not info.value.may_have_run
        assert "the transaction is lost" in str(info.value)
        assert scene.count(scene.marks) == 0
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_transaction_reset_mid_statement_saves_nothing(scene: Scene) -> None:
    scene.make_big()
    db = scene.manager()
    try:
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            with db.transaction() as tx:
                tx.execute_query(f"INSERT INTO {scene.marks} (v) VALUES (6)")
                scene.proxy.reset_after(1_000_000, DOWN)
                tx.execute_query(f"SELECT id, pad FROM {scene.big} ORDER BY id")
        assert scene.proxy.fired == 1
        assert "the transaction is lost" in str(info.value)
        assert scene.count(scene.marks) == 0
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_a_reset_at_commit_says_the_transaction_may_have_been_saved(scene: Scene) -> None:
    db = scene.manager()
    try:
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            with db.transaction() as tx:
                tx.execute_query(f"INSERT INTO {scene.marks} (v) VALUES (7)")
                scene.proxy.reset_after(0, DOWN)
        assert scene.proxy.fired == 1
        assert info.value.may_have_run
        assert "may have been saved" in str(info.value)
        assert scene.count(scene.marks, "v = 7") <= 1
        assert_pool_recovered(db)
    finally:
        db.dispose()


def test_async_a_reset_mid_result_is_an_error_and_no_second_run(scene: Scene) -> None:
    scene.make_big()
    db = scene.manager()
    adb = scene.async_manager(db)

    async def run() -> None:
        await adb.execute_query("SELECT 1 AS one")
        scene.proxy.reset_after(1_000_000, DOWN)
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            await adb.execute_query(scene.write_then_read(8))
        assert info.value.may_have_run
        assert await adb.execute_query("SELECT 1 AS one") == [{"one": 1}]

    try:
        asyncio.run(run())
        assert scene.proxy.fired == 1
        assert scene.count(scene.marks, "v = 8") <= 1
    finally:
        adb.dispose()
        db.dispose()


def test_a_reset_mid_migration_applies_nothing_and_the_next_run_applies_it_once(
    env: Any, backend: Backend, fresh_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "migrations"
    (root / "appdb").mkdir(parents=True)
    # Padding makes the file's text large, so a reset 100 KB into the
    # client's bytes falls inside it, after the lock and history queries.
    padding = "\n".join(f"-- {'x' * 96}" for _ in range(2_000))
    (root / "appdb" / "V1__marks.sql").write_text(
        backend.ddl("CREATE TABLE mig_marks (v {int});\n")
        + "INSERT INTO mig_marks (v) VALUES (1);\n"
        + padding
        + "\nINSERT INTO mig_marks (v) VALUES (2);\n"
    )
    proxy = FaultProxy(urllib.parse.urlsplit(fresh_url).port or 0)
    settings = {**backend.settings, "auto_migrate": "off", "pool_release_grace": 0}
    proxied = env.database("appdb", url=through(proxy, fresh_url), **settings)
    direct = env.manager(env.database("appdb_direct", url=fresh_url, **backend.settings))
    db = dbflow.DatabaseManager(proxied, config=env.config(), migrations_dir=root)
    try:
        db.execute_query("SELECT 1 AS one")
        proxy.reset_after(100_000, UP)
        with pytest.raises(dbflow.DatabaseError) as info:
            db.run_migrations()
        assert proxy.fired == 1
        assert "may have run" in str(info.value) or "transaction is lost" in str(info.value)
        exists = direct.execute_query(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = 'mig_marks'"
        )
        assert int(exists[0]["n"]) == 0
        report = db.run_migrations()
        assert report == {"applied": ["V1"], "current_version": "V1"}
        assert direct.execute_query("SELECT v FROM mig_marks ORDER BY v") == [{"v": 1}, {"v": 2}]
    finally:
        db.dispose()
        direct.dispose()
        proxy.close()
