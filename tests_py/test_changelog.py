"""CHANGELOG.md keeps up with the version: its newest released section is
the version this build carries (Cargo.toml's, through dbflow.__version__)."""

from __future__ import annotations

import re
from pathlib import Path

import dbflow

CHANGELOG = Path(__file__).parents[1] / "CHANGELOG.md"


def test_newest_release_in_the_changelog_is_this_version() -> None:
    text = CHANGELOG.read_text()
    assert "## [Unreleased]" in text, "Keep a Changelog keeps an Unreleased section on top"
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\] - (\d{4}-\d{2}-\d{2})$", text, re.M)
    assert releases, "CHANGELOG.md names no release as '## [X.Y.Z] - YYYY-MM-DD'"
    newest_version, _date = releases[0]
    assert newest_version == dbflow.__version__
