"""The wheel that would ship, installed as a user installs it: into a fresh
venv, on a PATH with no Rust toolchain and no C compiler, then a Prefect
flow through dbflow against the PostgreSQL test server.

The test command builds that wheel first (`scripts/build-dbflow --manylinux`:
manylinux_2_28, the tag scripts/wheels gives every CPython) and leaves it in
target/wheels/. This test also checks it as a package index would:
`auditwheel show` finds it within manylinux_2_28 and `check-wheel-contents`
finds nothing wrong in it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from backends import with_database

import dbflow

ROOT = Path(__file__).parents[1]
WHEEL_DIR = ROOT / "target" / "wheels"
PLATFORM_TAG = f"manylinux_2_28_{platform.machine()}"
CPYTHON_TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"

# Passed through to pip in the fresh venv: where packages come from (index,
# proxy, certificates) and its cache. Nothing that finds a compiler.
PIP_SETTINGS = re.compile(
    r"^(PIP_.*|HOME|HTTPS?_PROXY|NO_PROXY|SSL_CERT_(FILE|DIR)|REQUESTS_CA_BUNDLE)$",
    re.IGNORECASE,
)
BUILD_TOOLS = ["cargo", "rustc", "rustup", "cc", "gcc", "clang", "zig", "maturin"]

SMOKE_FLOW = textwrap.dedent(
    """
    import json
    import shutil

    from prefect import flow, task

    import dbflow

    # The wheel brought everything with it: nothing here could have built it.
    assert not [t for t in {tools!r} if shutil.which(t)], "a build tool is on PATH"


    @task
    def load(rows: int) -> int:
        with dbflow.DatabaseManager("smoke_db") as db:
            db.execute_query("CREATE TABLE smoke (id int PRIMARY KEY, name text NOT NULL)")
            with db.transaction() as tx:
                tx.execute_many(
                    "INSERT INTO smoke (id, name) VALUES (:id, :name)",
                    [{{"id": i, "name": f"row {{i}}"}} for i in range(rows)],
                )
        return rows


    @task
    def summarize() -> dict[str, object]:
        with dbflow.DatabaseManager("smoke_db") as db:
            (row,) = db.execute_query(
                "SELECT count(*) AS n, sum(id) AS total, max(name) AS last FROM smoke"
            )
        return {{"n": int(row["n"]), "total": int(row["total"]), "last": row["last"]}}


    @flow
    def smoke(rows: int) -> dict[str, object]:
        load(rows)
        return summarize()


    print(json.dumps({{"version": dbflow.__version__, "summary": smoke(100)}}))
    """
)


def built_wheel() -> Path:
    wheels = sorted(WHEEL_DIR.glob(f"dbflow-*-{CPYTHON_TAG}-{CPYTHON_TAG}-*.whl"))
    assert len(wheels) == 1, (
        f"expected one {CPYTHON_TAG} wheel in {WHEEL_DIR}, found {[w.name for w in wheels]}: "
        "build it with scripts/build-dbflow --manylinux (the test command does)"
    )
    return wheels[0]


def tool(name: str) -> str:
    """A checker installed beside this interpreter (requirements-dev.txt)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed; it is in requirements-dev.txt"
    return found


def test_the_wheel_is_manylinux_and_well_formed() -> None:
    wheel = built_wheel()
    assert wheel.name.endswith(f"-{PLATFORM_TAG}.whl"), wheel.name
    shown = subprocess.run(
        [tool("auditwheel"), "show", str(wheel)], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    # auditwheel names the most compatible policy the wheel's symbols allow.
    report = " ".join(shown.stdout.split())
    policy = re.search(
        rf'consistent with the following platform tag: "manylinux_2_(\d+)_{platform.machine()}"',
        report,
    )
    assert policy and int(policy.group(1)) <= 28, report
    contents = subprocess.run(
        [tool("check-wheel-contents"), str(wheel)], capture_output=True, text=True, timeout=120
    )
    assert contents.returncode == 0, contents.stdout + contents.stderr


@pytest.mark.postgres
def test_the_wheel_runs_a_prefect_flow_in_a_fresh_venv_without_build_tools(
    tmp_path: Path, pg_url: str, pg_database
) -> None:  # type: ignore[no-untyped-def]
    wheel = built_wheel()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    base = {k: v for k, v in os.environ.items() if PIP_SETTINGS.match(k)}
    # Only the venv's own commands: no cargo, rustc, cc or zig to fall back on.
    base["PATH"] = str(bin_dir)
    # Prefect at the versions this suite runs with: pip then resolves nothing
    # anew (unconstrained, it took ten minutes here) and takes them from its cache.
    constraints = tmp_path / "constraints.txt"
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude", "dbflow"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    constraints.write_text(frozen.stdout)
    install = subprocess.run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--only-binary",
            ":all:",
            "--constraint",
            str(constraints),
            f"dbflow[prefect] @ {wheel.as_uri()}",
        ],
        env=base,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    script = tmp_path / "smoke_flow.py"
    script.write_text(SMOKE_FLOW.format(tools=BUILD_TOOLS))
    run_env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        # Prefect's temporary local server; nothing leaves the machine.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DBFLOW_ENVIRONMENT": "smoke",
        "SMOKE_GLOBAL_SMOKE_DB_CONNECTION_STRING": with_database(pg_url, pg_database()),
    }
    run = subprocess.run(
        [str(bin_dir / "python"), str(script)],
        env=run_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {
        "version": dbflow.__version__,
        "summary": {"n": 100, "total": sum(range(100)), "last": "row 99"},
    }
