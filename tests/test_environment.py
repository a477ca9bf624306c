"""A broken install is one line naming the library, its error and the fix, before any work:
real subprocesses of the `featurestore` program with a shadow package on PYTHONPATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_environment import broken_package

pytest_plugins = ["helpers_store"]

FEATURESTORE = Path(sys.executable).with_name("featurestore")
FIX = "reinstall the tested set: pip install -c constraints.txt -e . (README, Install)"
TORCHAUDIO = re.compile(r"torchaudio \S+ cannot load with torch \S+ \(OSError: Could not load this library: "
                        r"\S+/torchaudio/lib/libtorchaudio\.so\): install a matching pair; " + re.escape(FIX))


def _run(args: list[str], shadow: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PYTHONPATH": str(shadow)} if shadow else {})}
    return subprocess.run([str(FEATURESTORE), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess, command: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"featurestore {command}: error: "), result.stderr
    return lines[0].removeprefix(f"featurestore {command}: error: ")


def test_doctor_prints_the_versions_and_passes_on_this_install():
    result = _run(["doctor"])
    assert result.returncode == 0, result.stderr
    versions = dict(line.split(maxsplit=1) for line in result.stdout.splitlines()[:-1])
    for name in ("python", "torch", "torchaudio", "zarr", "numcodecs", "dask", "librosa", "soundfile"):
        assert re.fullmatch(r"\d+\.\d+\S*", versions[name]), (name, versions.get(name))
    assert result.stdout.splitlines()[-1] == "ok: the feature libraries import and compute"


def test_doctor_names_a_torchaudio_that_cannot_load(tmp_path):
    result = _run(["doctor"], broken_package(tmp_path, "torchaudio"))
    assert TORCHAUDIO.fullmatch(_one_line_error(result, "doctor"))


@pytest.mark.parametrize("library", ["torchaudio", "soundfile"])
def test_build_stops_before_touching_the_store(library, store_corpus, tmp_path):
    out = tmp_path / "store.zarr"
    result = _run(["build", str(store_corpus.few_manifest), "--audio-root", str(store_corpus.audio), "--out", str(out),
                   "--duration", "1", "--crop-samples", "4096", "--workers", "1", "--quiet"],
                  broken_package(tmp_path / "shadow", library))
    message = _one_line_error(result, "build")
    if library == "torchaudio":
        assert TORCHAUDIO.fullmatch(message)
    else:
        assert message.startswith("cannot use soundfile ") and "libsndfile.so" in message and message.endswith(FIX)
    assert not out.exists()


def test_train_predict_and_demo_stop_with_one_line(tmp_path):
    shadow = broken_package(tmp_path / "shadow", "torchaudio")
    runs = {
        "train": ["train", str(tmp_path / "store.zarr"), "--model", "cnn4", "--out", str(tmp_path / "run")],
        "evaluate": ["evaluate", str(tmp_path / "run")],
        "predict": ["predict", str(tmp_path / "run"), str(tmp_path / "a.wav")],
        "demo": ["demo", "--out", str(tmp_path / "demo")],
    }
    for command, args in runs.items():
        assert TORCHAUDIO.fullmatch(_one_line_error(_run(args, shadow, cwd=tmp_path), command)), command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shadow"]  # nothing was written
