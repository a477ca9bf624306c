"""Progress a log file shows: lines on time when the output is not a terminal, a bar when it is."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time


from featurestore.progress import EVERY_ENV, Progress

pytest_plugins = ["helpers_store", "helpers_trainers"]
LINE = re.compile(r"^(?P<label>[^:]+): (?P<done>[\d,]+)/(?P<total>[\d,]+) (?P<unit>\w+) \((?P<pct>\d+) %\), "
                  r"[\d.e+]+ \w+/s(, ETA \d+:\d\d)?.* \(\d+:\d\d elapsed\)$")


def test_lines_come_on_time_even_while_a_step_hangs_and_stop_when_closed(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "0.05")
    stream = io.StringIO()  # not a terminal: a log file
    with Progress(10, label="work", unit="files", stream=stream) as progress:
        progress.update(3, failed=1)
        time.sleep(0.4)  # one slow step: the lines must not wait for it
        lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and not progress.bar
    match = LINE.match(lines[-1])
    assert match and match.group("label", "done", "total", "unit", "pct") == ("work", "3", "10", "files", "30")
    assert "failed 1" in lines[-1] and "ETA" in lines[-1]
    time.sleep(0.2)
    assert len(stream.getvalue().splitlines()) <= len(lines) + 1  # closed: at most one line was in flight


def test_a_terminal_gets_a_bar_and_no_lines(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "0.05")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with Progress(4, label="work", unit="files", stream=stream) as progress:
        progress.update(2)
        time.sleep(0.2)
    drawn = stream.getvalue()
    assert progress.bar and "work:" in drawn and "/4 [" in drawn  # tqdm's bar
    assert not any(LINE.match(part.strip()) for part in re.split(r"[\r\n]", drawn))


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, EVERY_ENV: "0.002"}
    done = subprocess.run([sys.executable, "-m", "featurestore", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done


def _labels(stderr: str) -> set[str]:
    return {m.group("label") for m in map(LINE.match, stderr.splitlines()) if m}


def test_train_evaluate_and_predict_report_progress_into_a_log(trainer_stores, tmp_path):
    run = tmp_path / "run"
    trained = _run("train", trainer_stores.genres, "--model", "cnn3", "--crop-frames", "32", "--epochs", "2",
                   "--batch-size", "2", "--num-workers", "0", "--out", str(run))
    assert {"epoch 1/2 training", "epoch 2/2 validation", "evaluating test"} <= _labels(trained.stderr)
    assert "\r" not in trained.stderr  # no bar redrawn into the log
    assert "evaluating test" in _labels(_run("evaluate", str(run)).stderr)
    files = sorted(str(p) for p in trainer_stores.genre_audio.rglob("*.wav"))[:6]
    predicted = _run("predict", str(run), *files, "--json")
    assert "predict" in _labels(predicted.stderr)
