"""MkDocs hooks: the parts of the site generated from the code at build time,
so they cannot drift from it.

- `<!-- settings-reference -->`: the configuration table, from the settings
  list in `src/config/keys.rs` (`dbflow._native.settings_reference()`);
- `<!-- cli-reference -->`: `dbflow --help` and every command's `--help`,
  from the CLI's own parser;
- `<!-- chart: FAMILY -->`: a benchmark family's chart, drawn by
  `benchmarks/charts.py` from the newest result file and added to the site
  as `img/performance/FAMILY.png` (never written into `docs/`), with that
  run's report below it, folded.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from textwrap import indent
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import charts  # noqa: E402  (benchmarks/charts.py)

CHART_DIR = "img/performance"
# Help text is wrapped to the terminal's width; the page's is fixed.
HELP_WIDTH = "88"
_drawn: dict[str, charts.Chart] = {}


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    _drawn.clear()
    for chart in charts.charts():
        _drawn[chart.family] = chart
        files.append(File.generated(config, f"{CHART_DIR}/{chart.family}.png", content=chart.png))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- settings-reference -->" in markdown:
        markdown = markdown.replace("<!-- settings-reference -->", settings_table())
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    return re.sub(r"<!-- chart: ([\w-]+) -->", lambda m: chart_markdown(m.group(1)), markdown)


def settings_table() -> str:
    from dbflow._native import settings_reference

    keys = {
        "database": "`<DB>_{key}`",
        "global": "`{key}`",
        "both": "`<DB>_{key}`, `{key}`",
    }
    rows = [
        "| key (after `<ENV>_GLOBAL_` or `<ENV>_<FLOW>_`) | scope | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in settings_reference():
        key = keys[s["scope"]].format(key=s["key"])
        rows.append(f"| {key} | {s['scope']} | {s['default']} | {s['meaning']} |")
    # md_in_html: the div gives the table its own style (docs/css/extra.css).
    return '<div class="settings-table" markdown>\n\n' + "\n".join(rows) + "\n\n</div>"


def cli_reference() -> str:
    from dbflow.cli import _parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        parser = _parser()
        sections = [f"## dbflow\n\n```text\n{parser.format_help().rstrip()}\n```"]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, command in action.choices.items():
                    help_text = command.format_help().rstrip()
                    sections.append(f"## dbflow {name}\n\n```text\n{help_text}\n```")
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n\n".join(sections)


def chart_markdown(family: str) -> str:
    chart = _drawn.get(family)
    if chart is None:
        return f"*No `{family}` results in `benchmarks/results/` yet.*"
    source = f"`benchmarks/results/{chart.source.name}`"
    return (
        f"[![{chart.title}]({CHART_DIR}/{family}.png){{ .chart }}]({CHART_DIR}/{family}.png)\n\n"
        f"*{chart.title}: drawn from {source}.*\n\n"
        f'??? note "The numbers: {chart.title} ({chart.source.stem})"\n\n'
        + indent(chart.tables, "    ")
    )
