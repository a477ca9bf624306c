"""`featurestore demo` end to end at a small size: a clearly learned result, failures reported, reuse."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from featurestore.cli import main
from featurestore.store import open_store

SMALL = ["--clips-per-style", "20", "--seconds", "5", "--epochs", "15", "--batch-size", "8", "--workers", "2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return tmp_path_factory.mktemp("demo")


def test_demo_learns_the_styles_and_reports_the_broken_files(demo, capsys):
    assert main(["demo", "--out", str(demo), *SMALL]) == 0
    printed = capsys.readouterr().out

    metrics = json.loads((demo / "run-cnn4" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9, metrics

    store = open_store(demo / "store.zarr")
    rows = store.manifest
    assert store.build_state == "complete" and store.n_pending == 0
    assert (store.status == 1).sum() + (store.status == 2).sum() == len(rows) == 8 * 20 + 3
    failed = rows[store.status == 2]
    assert len(failed) == 3 and failed["error"].str.len().gt(0).all()
    for reason in failed["error"]:
        assert reason in printed, "every failed clip is named in the summary with its reason"
    for figure in ("confusion.png", "curves.png", "per_class.png"):
        assert (demo / "run-cnn4" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "featurestore build" in printed and "featurestore train" in printed, "ends with the commands to run by hand"


def test_demo_rerun_reuses_everything(demo, capsys):
    before = {p: p.stat().st_mtime_ns for p in (demo / "corpus").rglob("*") if p.is_file()}
    manifest = (demo / "manifest.parquet").stat().st_mtime_ns
    assert main(["demo", "--out", str(demo), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "reused the corpus" in printed and "reused the finished run" in printed
    assert "(0 built now" in printed, "the complete store is not rebuilt"
    assert {p: p.stat().st_mtime_ns for p in (demo / "corpus").rglob("*") if p.is_file()} == before
    assert (demo / "manifest.parquet").stat().st_mtime_ns == manifest


def test_demo_multilabel_variant_trains_a_tagger(tmp_path, capsys):
    args = ["--clips-per-style", "8", "--seconds", "5", "--epochs", "15", "--batch-size", "8", "--workers", "2",
            "--multilabel"]
    assert main(["demo", "--out", str(tmp_path), *args]) == 0
    rows = pd.read_parquet(tmp_path / "manifest.parquet")
    assert rows["labels"].map(len).max() == 2, "clips carry two mixed styles"
    metrics = json.loads((tmp_path / "run-cnn4" / "metrics.json").read_text())
    assert metrics["roc_auc_macro"] >= 0.75, metrics
    assert "roc_auc_macro" in capsys.readouterr().out


def test_demo_stops_after_a_failed_build_in_one_line(tmp_path):
    """Good files damaged on disk after the corpus was written (same sizes, so it is reused): the
    build fails them, and the demo stops there with one line instead of training on nothing; no
    Dask log block reaches the terminal."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from featurestore.synth import CorpusConfig, generate_corpus

    corpus = generate_corpus(CorpusConfig(root=tmp_path / "corpus", clips_per_style=4, seconds=2.0, seed=0))
    rng = np.random.default_rng(0)
    for clip in corpus.clips:
        path = corpus.root / clip.path
        path.write_bytes(rng.integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())
    result = subprocess.run([str(Path(sys.executable).with_name("featurestore")), "demo", "--out", str(tmp_path),
                             "--clips-per-style", "4", "--seconds", "2", "--epochs", "1", "--workers", "1"],
                            capture_output=True, text=True, timeout=300, env=os.environ)
    assert result.returncode == 2, result.stderr
    assert "reused the corpus" in result.stdout and "ok 0, failed 35" in result.stdout
    errors = [line for line in result.stderr.splitlines() if "featurestore demo: error:" in line]
    assert errors == [f"featurestore demo: error: the build stored 0 of the corpus's 32 good clips (35 failed, 0 "
                      f"pending; the summary above names the first): fix the cause and re-run `featurestore demo "
                      f"--out {tmp_path}`, which resumes the build"]
    for noise in ("Traceback", "Compute Failed", "still alive after"):
        assert noise not in result.stdout + result.stderr
    assert not (tmp_path / "run-cnn4").exists()
