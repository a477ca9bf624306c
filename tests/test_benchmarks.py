"""Smoke test of `python -m benchmarks all --quick`: every benchmark runs end to end on tiny inputs
and writes its section, tables and plots. Speed is not asserted (that is what the full run measures)."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.results import Section, Table, Target, load_sections, render, write_results, write_section

EXPECTED = {  # benchmark -> (section title, words each expected table caption contains, plots)
    "footprint": ("Footprint", ["step by step", "Lossless codecs", "Chunk and shard shapes", "Bounded error",
                                "trained model"], ["footprint.png"]),
    "build": ("Build throughput", ["MTAT-like clips", "FMA-like clips", "GTZAN-like clips",
                                   "where the 2-worker build's time goes", "lossless codecs", "MP3 decoders",
                                   "GTZAN handcrafted"], []),
    "cold": ("Cold builds from the command line", ["cold builds", "fixed cost and cost per added clip"], []),
    "loader": ("Loader throughput", ["Samples/s"], []),
    "scaling": ("Scaling", ["Start-up", "Build time against clip count", "Warm clusters", "Projected wall time"],
                ["scaling.png"]),
    "recovery": ("Recovery", ["MTAT-like clips"], []),
    "growth": ("Growing a store", ["Seconds on 2 warm workers"], []),
    "gpu": ("GPU training", ["Training samples/s per recipe", "Loader alone", "Options on CUDA",
                             "trained on the CPU and on CUDA"], []),
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `all --quick` run (the benchmarks share warm Dask clusters, as in a real run)."""
    out = tmp_path_factory.mktemp("bench-out")
    code = main(["all", "--quick", "--out", str(out), "--cache", str(tmp_path_factory.mktemp("bench-cache"))])
    return code, out


def test_quick_run_succeeds(quick_run):
    code, out = quick_run
    assert code == 0
    assert [s.name for s in load_sections(out)] == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_benchmark_writes_its_section(name, quick_run):
    _, out = quick_run
    title, captions, plots = EXPECTED[name]
    section = json.loads((out / "results" / f"{name}.json").read_text())
    assert section["title"] == title and section["quick"] is True
    assert [c for c in captions if not any(c in t["caption"] for t in section["tables"])] == []
    for table in section["tables"]:
        assert table["rows"], f"{table['caption']}: no rows"
        assert all(len(row) == len(table["columns"]) for row in table["rows"]), table["caption"]
    assert section["machine"]["CPU"] and section["versions"]["zarr"] != "not installed"
    for target in section["targets"]:
        assert isinstance(target["met"], bool) and target["measured"]

    results = (out / "RESULTS.md").read_text()
    assert f"## {title}" in results and "QUICK RUN" in results and section["command"] in results
    for plot in plots:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in results


def test_sections_accumulate_and_render_in_a_fixed_order(tmp_path):
    """Running one benchmark refreshes its own section and keeps the others (rendered from JSON)."""
    for name in ("scaling", "footprint"):
        write_section(tmp_path, Section(name=name, title=name.title(), summary="s",
                                        tables=[Table("cap", ["a", "b"], [["1", "2"]])],
                                        targets=[Target("w", "≥ 1", "0.5", False)], date="2026-01-01"))
    text = write_results(tmp_path).read_text()
    assert [s.name for s in load_sections(tmp_path)] == ["footprint", "scaling"]
    assert text.index("## Footprint") < text.index("## Scaling")
    assert "| footprint | w | ≥ 1 | 0.5 | **MISSED** |" in text
    assert text == render(load_sections(tmp_path))


def test_gpu_benchmark_runs_every_recipe_on_the_cpu_and_marks_cuda_skipped(quick_run):
    """Without a CUDA device (CI) every CUDA row says so; every recipe still has a measured CPU row
    in its `train` configuration, with the bytes each sample carried."""
    import torch

    from trainers.recipes import RECIPES

    _, out = quick_run
    section = json.loads((out / "results" / "gpu.json").read_text())
    training = section["tables"][0]["rows"]
    cpu = {row[0]: row for row in training if row[2] == "cpu"}
    assert list(cpu) == list(RECIPES)
    for row in cpu.values():
        assert row[3] == "fp32" and float(row[6].replace(",", "")) > 0 and int(row[11].replace(",", "")) > 0
    if not torch.cuda.is_available():
        skipped = [row for row in training if row[2] == "cuda"]
        assert len(skipped) == len(RECIPES) and all(row[3] == "skipped: no CUDA device" for row in skipped)
        assert all(row[2] == "skipped: no CUDA device" for row in section["tables"][2]["rows"])
        assert section["targets"] == []  # no target is judged on a machine that cannot measure it
