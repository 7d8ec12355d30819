"""Charts of the newest benchmark results, one PNG per benchmark family.

    python benchmarks/charts.py OUT_DIR      # writes OUT_DIR/<family>.png

The documentation build calls `charts()` and puts the PNGs into the site,
so the charts always show the results in `benchmarks/results/`. A family's
newest result is the one with the latest timestamp in its name (or, for the
Markdown tables of run.py and mssql.py, in its heading); a family without
results has no chart.

Families: `postgresql` and `sqlserver` (the quiet tables of run.py and
mssql.py: speed as a ratio to the replaced design), `arrow` (arrow.py),
`procedures` (procedures.py), `loaded-postgresql` and `loaded-sqlserver`
(loaded.py: median and p99 latency per load level).
"""

from __future__ import annotations

import io
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the charts are files
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loaded import LABELS as LOADED_LABELS
from loaded import WORKLOADS as LOADED_WORKLOADS

RESULTS = Path(__file__).resolve().parent / "results"
DBFLOW_COLOR = "#3f51b5"
PEER_COLOR = "#b0b7c3"
# One colour per contestant where several are drawn side by side.
PALETTE = ["#3f51b5", "#9e9e9e", "#e57373", "#81c784", "#ffb74d", "#4db6ac", "#ba68c8"]
LEVEL_NAMES = {
    "0": "quiet",
    "1": "1 core busy",
    "2": "2 cores busy",
    "pool": "thread pool in the client",
}


@dataclass
class Chart:
    """One family's chart: the PNG, the result file it was drawn from, and
    that run's report (Markdown: its table, or the whole report beside a
    JSON result)."""

    family: str
    title: str
    source: Path
    png: bytes
    tables: str


def newest(pattern: str) -> Path | None:
    """The result file matching `pattern` whose name sorts last (names carry
    the run's UTC timestamp)."""
    found = sorted(RESULTS.glob(pattern))
    return found[-1] if found else None


def newest_full_loaded_run() -> Path | None:
    """The newest loaded.py run that measured every line quiet and with one
    and two cores busy (a run of a few lines or of the `pool` level alone,
    to look closer at them, is not drawn)."""
    for path in sorted(RESULTS.glob("loaded-*.json"), reverse=True):
        lines = json.loads(path.read_text())
        for level in ("0", "1", "2"):
            if not {line[2] for line in lines if line[0] == level} >= set(LOADED_WORKLOADS):
                break
        else:
            return path
    return None


# --- the quiet tables (Markdown: run.py and mssql.py write no JSON) ---------


@dataclass
class RatioTable:
    heading_time: str
    contestants: list[str]
    rows: list[tuple[str, list[float | None]]]  # workload, ratio per contestant
    markdown: str


TABLE = re.compile(r"(?:^\|.*\|\n?)+", re.M)
RATIO_CELL = re.compile(r"\(\*\*([\d.]+)x\*\*\)")


def ratio_tables(path: Path) -> list[RatioTable]:
    """Every table of ratios in a run.py / mssql.py report."""
    text = path.read_text()
    stamp = re.search(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC", text)
    tables: list[RatioTable] = []
    for block in TABLE.findall(text):
        lines = block.strip().splitlines()
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        rows = []
        for line in lines[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            ratios = [RATIO_CELL.search(c) for c in cells[1:]]
            if any(ratios):
                rows.append((cells[0], [float(m.group(1)) if m else None for m in ratios]))
        if rows:
            when = stamp.group(1) if stamp else ""
            tables.append(RatioTable(when, header[1:], rows, block.strip()))
    return tables


def newest_ratio_table(replaced: str) -> tuple[Path, RatioTable] | None:
    """The newest table whose first contestant is `replaced` (the replaced
    design's column names the backend), over every quiet report."""
    found = []
    for path in RESULTS.glob("*.md"):
        if re.match(r"(ab|arrow|loaded|procedures)-", path.name):
            continue
        for table in ratio_tables(path):
            if table.contestants[0].startswith(replaced):
                found.append((table.heading_time, path.name, path, table))
    if not found:
        return None
    # Equal times: the timestamped report, not its `latest` copy.
    _, _, path, table = max(found, key=lambda f: (f[0], f[1][0].isdigit(), f[1]))
    return path, table


def draw_ratios(table: RatioTable, title: str) -> Figure:
    workloads = [w.replace("`", "") for w, _ in table.rows]
    n = len(table.contestants)
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(workloads) * max(1.0, n / 4) + 1.5))
    for i, name in enumerate(table.contestants):
        ys = [r + (i - (n - 1) / 2) * height for r in range(len(workloads))]
        values = [ratios[i] or 0.0 for _, ratios in table.rows]
        color = DBFLOW_COLOR if name == "dbflow" else PALETTE[1:][i % (len(PALETTE) - 1)]
        bars = ax.barh(ys, values, height=height, label=name, color=color)
        if name == "dbflow":
            ax.bar_label(bars, fmt="%.1fx", padding=2, fontsize=10)
    ax.set_yticks(range(len(workloads)), [wrap(w, 38) for w in workloads], fontsize=10)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("speed as a ratio to the replaced design (higher is faster)")
    ax.set_title(title, fontsize=13)
    ax.legend(loc="lower right", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


# --- arrow.py and procedures.py: seconds per round, per contestant ---------


def draw_seconds(groups: dict[str, dict[str, list[float]]], title: str) -> Figure:
    """One panel per group: each contestant's median seconds, fastest first."""
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(10, sum(0.38 * len(g) + 0.9 for g in groups.values()) + 0.6),
        gridspec_kw={"height_ratios": [len(g) + 1.5 for g in groups.values()]},
        squeeze=False,
    )
    for ax, (group, by_name) in zip(axes[:, 0], groups.items(), strict=True):
        medians = sorted((statistics.median(v), name) for name, v in by_name.items() if v)
        names = [wrap(name, 60) for _, name in medians]
        values = [m for m, _ in medians]
        colors = [DBFLOW_COLOR if "dbflow" in name else PEER_COLOR for _, name in medians]
        bars = ax.barh(range(len(values)), values, color=colors)
        ax.bar_label(bars, fmt="%.2f s", padding=2, fontsize=10)
        ax.set_yticks(range(len(names)), names, fontsize=10)
        ax.invert_yaxis()
        ax.set_title(group, fontsize=12, loc="left")
        ax.set_xlim(0, max(values) * 1.15)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds, median over rounds (shorter is faster)")
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


def arrow_groups(raw: dict[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    """`"pg_read: dbflow fetch_arrow (Arrow)": [...]` -> group -> name -> seconds."""
    groups: dict[str, dict[str, list[float]]] = {}
    for key, seconds in raw.items():
        group, _, name = key.partition(": ")
        groups.setdefault(group, {})[name] = seconds
    return groups


def procedure_groups(raw: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """`samples[group][line][contestant]` -> "group: line" -> contestant -> seconds."""
    return {
        f"{group}: {line}": by_name
        for group, lines in raw["samples"].items()
        for line, by_name in lines.items()
    }


# --- loaded.py: latency per load level ---------------------------------------


def draw_loaded(lines: list[list[Any]], backend: str, title: str) -> Figure | None:
    """One panel per workload: median (bar) and p99 (tick) per contestant per level."""
    mine = [line for line in lines if line[1] == backend]
    if not mine:
        return None
    workloads = list(dict.fromkeys(line[2] for line in mine))
    levels = list(dict.fromkeys(line[0] for line in mine))
    contestants = list(dict.fromkeys(name for line in mine for name in line[3]))
    cols = 2
    rows = (len(workloads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.6 * rows + 1.2), squeeze=False)
    width = 0.8 / len(contestants)
    for ax, workload in zip(axes.flat, workloads, strict=False):
        for i, name in enumerate(contestants):
            xs, medians, p99s = [], [], []
            for x, level in enumerate(levels):
                for lv, _, wl, row in mine:
                    if lv == level and wl == workload and name in row:
                        xs.append(x + (i - (len(contestants) - 1) / 2) * width)
                        medians.append(row[name]["median"])
                        p99s.append(row[name]["p99"])
            color = PALETTE[i % len(PALETTE)]
            ax.bar(xs, medians, width=width, color=color, label=name)
            ax.scatter(xs, p99s, marker="_", s=110, color="black", linewidths=1.2, zorder=3)
        ax.set_yscale("log")
        ax.set_xticks(range(len(levels)), [LEVEL_NAMES.get(lv, lv) for lv in levels], fontsize=10)
        label = LOADED_LABELS.get(workload, workload).replace("`", "")
        ax.set_title(label, fontsize=12, loc="left")
        ax.set_ylabel("µs per operation", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    for ax in axes.flat[len(workloads) :]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncols=len(contestants), fontsize=10)
    fig.suptitle(
        f"{title}\nbars: median; black ticks: p99 (log scale)", fontsize=13, x=0.01, ha="left"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


# --- all families --------------------------------------------------------------


def report_body(report: Path, section: str | None = None) -> str:
    """A Markdown report without its title (and, given a `section`, without
    the other `## ` sections), its headings as bold lines and its `[n]`
    note marks escaped, to show inside another page."""
    if not report.exists():
        return ""
    lines = report.read_text().splitlines()[1:]
    if section is not None:
        parts = re.split(r"^(?=## )", "\n".join(lines), flags=re.M)
        kept = [p for p in parts if not p.startswith("## ") or p.startswith(f"## {section}\n")]
        lines = "".join(kept).splitlines()
    body = "\n".join(f"**{ln.lstrip('#').strip()}**" if ln.startswith("#") else ln for ln in lines)
    return escape_note_marks(body.strip())


def escape_note_marks(markdown: str) -> str:
    """`[1] [2]` would read as a reference link; they are note numbers."""
    return re.sub(r"\[(\d+)\]", r"\\[\1\\]", markdown)


def wrap(text: str, width: int) -> str:
    """Break a long label on spaces so it fits beside its bar."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
    return out.getvalue()


def charts() -> list[Chart]:
    """A chart per family that has results, from its newest result file."""
    drawn: list[Chart] = []

    def add(family: str, title: str, source: Path, fig: Figure | None, tables: str = "") -> None:
        if fig is not None:
            tables = tables or report_body(source.with_suffix(".md"))
            drawn.append(Chart(family, title, source, png(fig), tables))

    for family, replaced, title in (
        ("postgresql", "sqlalchemy+psycopg2", "PostgreSQL, quiet machine"),
        ("sqlserver", "sqlalchemy+pyodbc", "SQL Server (Babelfish), quiet machine"),
    ):
        if found := newest_ratio_table(replaced):
            report, table = found
            add(family, title, report, draw_ratios(table, title), escape_note_marks(table.markdown))
    if path := newest("arrow-*.json"):
        groups = arrow_groups(json.loads(path.read_text()))
        add("arrow", "Arrow reads and loads", path, draw_seconds(groups, "Arrow"))
    if path := newest("procedures-*.json"):
        procs = procedure_groups(json.loads(path.read_text()))
        add("procedures", "Stored procedures", path, draw_seconds(procs, "Stored procedures"))
    if path := newest_full_loaded_run():
        lines = json.loads(path.read_text())
        for backend, family, section, title in (
            ("pg", "loaded-postgresql", "PostgreSQL", "PostgreSQL on a busy machine"),
            ("ms", "loaded-sqlserver", "SQL Server", "SQL Server (Babelfish) on a busy machine"),
        ):
            section_report = report_body(path.with_suffix(".md"), section)
            add(family, title, path, draw_loaded(lines, backend, title), section_report)
    return drawn


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/charts.py OUT_DIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for chart in charts():
        (out / f"{chart.family}.png").write_bytes(chart.png)
        print(f"{out / chart.family}.png  ({chart.title}, from {chart.source.name})")


if __name__ == "__main__":
    main()
