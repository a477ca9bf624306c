"""Results: each benchmark's section kept as JSON, RESULTS.md rendered from all of them.

Keeping one JSON per benchmark lets `python -m benchmarks loader` refresh its own section
without rerunning (or erasing) the others; the Markdown is always regenerated from the
sections present, so tables, the targets summary and the machine description never drift apart.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from featurestore.locations import write_bytes

ORDER = ("footprint", "build", "cold", "loader", "scaling", "recovery", "growth", "gpu")


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Target:
    what: str
    goal: str
    measured: str
    met: bool


@dataclass
class Section:
    name: str
    title: str
    summary: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    # Filled in by the runner, so each section says when, how and where it was measured.
    command: str = ""
    date: str = ""
    quick: bool = False
    wall_seconds: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "Section":
        d = dict(d)
        d["tables"] = [Table(**t) for t in d.get("tables", [])]
        d["targets"] = [Target(**t) for t in d.get("targets", [])]
        return cls(**d)


def fmt(x: float, digits: int = 3) -> str:
    """Human-sized numbers: thousands separated, `digits` significant figures for small ones."""
    if x != x:  # NaN
        return "n/a"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:,.{digits}g}"


def save_figure(fig, path: Path) -> str:
    """Write a matplotlib figure atomically; return its file name for the section's plot list."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(str(path), buf.getvalue())
    return path.name


def section_path(out: Path, name: str) -> Path:
    return out / "results" / f"{name}.json"


def write_section(out: Path, section: Section) -> None:
    write_bytes(str(section_path(out, section.name)), json.dumps(dataclasses.asdict(section), indent=1).encode())


def load_sections(out: Path) -> list[Section]:
    sections = []
    for name in ORDER:
        p = section_path(out, name)
        if p.exists():
            sections.append(Section.from_dict(json.loads(p.read_text())))
    return sections


def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(sections: list[Section]) -> str:
    out = ["# Benchmarks", ""]
    if any(s.quick for s in sections):
        out += [
            "> **QUICK RUN** (`--quick`): tiny inputs for the smoke test. These numbers are not",
            "> measurements; the committed file comes from the full run.",
            "",
        ]
    out += [
        "Regenerate everything with `python -m benchmarks all` (about 25 minutes on 2 quiet cores), or one",
        "section with `python -m benchmarks footprint|build|loader|scaling|recovery|growth|gpu`. Every speed figure below",
        "was measured with the project and its baseline **alternating in the same run** (A B A B …,",
        "medians reported), so ratios stay meaningful on a noisy machine. Input audio is generated",
        "by `featurestore.synth` and cached in `.bench/` (git-ignored).",
        "",
    ]
    if sections:
        latest = max(sections, key=lambda s: s.date)
        out += ["## Machine", "", _table(["", ""], [[k, v] for k, v in latest.machine.items()]), ""]
        out += ["## Library versions", "", _table(["library", "version"], [[k, v] for k, v in latest.versions.items()]), ""]
        targets = [(s, t) for s in sections for t in s.targets]
        if targets:
            out += ["## Targets", ""]
            rows = [[s.name, t.what, t.goal, t.measured, "met" if t.met else "**MISSED**"] for s, t in targets]
            out += [_table(["benchmark", "what", "target", "measured", "verdict"], rows), ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [f"`{s.command}` · {s.date} · {s.wall_seconds:,.0f} s · load average at start "
                f"{s.machine.get('load average at start (1 / 5 / 15 min)', '?')}", ""]
        out += [s.summary, ""]
        for t in s.tables:
            out += [f"**{t.caption}**", "", _table(t.columns, t.rows), ""]
        for p in s.plots:
            out += [f"![{s.name}]({p})", ""]
        for n in s.notes:
            out += [f"- {n}"]
        if s.notes:
            out += [""]
    return "\n".join(out).rstrip() + "\n"


def write_results(out: Path) -> Path:
    path = out / "RESULTS.md"
    write_bytes(str(path), render(load_sections(out)).encode())
    return path
