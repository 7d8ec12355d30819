"""The documentation keeps up with the code: every exception dbflow exports
has its section on the Errors page, and every setting the Rust core reads
has a meaning on the Configuration page (which the site build generates
from the same list)."""

from __future__ import annotations

import re
from pathlib import Path

import dbflow
import dbflow.testing
from dbflow._native import settings_reference

DOCS = Path(__file__).resolve().parents[1] / "docs"


def exported_exceptions() -> set[str]:
    names = set()
    for module in (dbflow, dbflow.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                names.add(name)
    return names


def test_every_exported_exception_has_a_section_on_the_errors_page() -> None:
    page = (DOCS / "errors.md").read_text()
    sections = set(re.findall(r"^## `(\w+)`", page, re.M))
    assert "DatabaseError" in exported_exceptions()
    missing = exported_exceptions() - sections
    assert not missing, f"docs/errors.md has no section for {sorted(missing)}"


def test_the_settings_reference_describes_every_setting() -> None:
    settings = settings_reference()
    keys = [s["key"] for s in settings]
    assert "CONNECTION_STRING" in keys and "QUERY_TIMEOUT" in keys
    assert len(keys) == len(set(keys))
    for setting in settings:
        assert setting["scope"] in {"database", "global", "both"}, setting
        assert setting["default"].strip() and setting["meaning"].strip(), setting
    # The page holds the marker the site build replaces with the table.
    assert "<!-- settings-reference -->" in (DOCS / "configuration.md").read_text()
