"""Example: how a flow project tests its flows with dbflow's pytest plugin
(installing dbflow is enough; the fixtures dbflow_mock and dbflow_database
come with it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))


@pytest.fixture(scope="session", autouse=True)
def prefect_backend() -> Iterator[None]:
    """Flows run against Prefect's temporary local test server."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield
