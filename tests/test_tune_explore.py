"""The research tooling around the recipes: `featurestore tune` (Optuna over a recipe's space,
killed and resumed for real), `featurestore explore` (t-SNE, K-means and silhouette), and the
best configuration a study writes trained again by `train --config`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import matplotlib.image
import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from featurestore.cli import main
from featurestore.store import OK, open_store
from trainers.config import load_run
from trainers.inputs import valid_segments
from trainers.tune import GRACE_SECONDS

pytest_plugins = ["helpers_store", "helpers_trainers"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(path).ndim == 3


def _study(out):
    return optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}")


def test_tune_is_killed_mid_trial_and_the_same_command_resumes_the_study(trainer_stores, tmp_path, capsys):
    out = tmp_path / "study"
    command = [sys.executable, "-m", "featurestore", "tune", trainer_stores.genres, "--recipe", "gtzan-ffnn",
               "--trials", "3", "--out", str(out), "--folds", "2", "--epochs", "2", "--num-workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    while not (out / "trials" / "trial-0001").exists():  # the second trial has begun
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the first trial never finished"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    states = [t.state for t in _study(out).trials]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING]
    assert (out / "best.json").is_file()  # results are written after every trial, not only at the end

    # A process that resumes sooner might finish its trials before the killed one's heartbeat is old
    # enough to be called stale (by design: another process may still be running it).
    time.sleep(GRACE_SECONDS)
    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert "ExperimentalWarning" not in resumed.stderr and "FutureWarning" not in resumed.stderr  # Optuna's noise
    study = _study(out)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3 and study.trials[0].state == TrialState.COMPLETE
    assert study.trials[1].state == TrialState.FAIL  # the killed one, found by its stale heartbeat
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]  # RetryFailedTrialCallback's mark
    assert len(retried) == 1 and retried[0].params == study.trials[1].params  # ... and tried again
    for trial in finished:
        assert trial.params.keys() == {"lr", "weight_decay", "batch_size"}
        if trial.state == TrialState.COMPLETE:  # each epoch of both folds reported to the pruner
            assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
            assert trial.value == pytest.approx(json.loads(
                (out / "trials" / f"trial-{trial.number:04d}" / "metrics.json").read_text())["best"])

    best = json.loads((out / "best.json").read_text())
    assert best["value"] == study.best_value and best["trial"] == study.best_trial.number
    assert best["options"]["recipe"] == "gtzan-ffnn" and best["options"]["folds"] is None
    assert best["options"]["lr"] == study.best_trial.params["lr"]
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == len(study.trials) and "params_lr" in table
    assert "**best**" in (out / "tune.md").read_text()
    _png(out / "tune.png")
    # the best configuration trains as it is; flags still override it
    run = tmp_path / "best-run"
    assert main(["train", trainer_stores.genres, "--config", str(out / "best.json"), "--out", str(run),
                 "--epochs", "1", "--num-workers", "0"]) == 0
    options = load_run(run)["options"]
    assert options["lr"] == best["options"]["lr"] and options["batch_size"] == best["options"]["batch_size"]
    assert options["epochs"] == 1 and options["split"] == "70/30"
    # a study folder answers only the command that made it
    assert main(["tune", trainer_stores.genres, "--recipe", "gtzan-cnn1d", "--trials", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a study run with other" in err and "recipe" in err
    assert main(["tune", trainer_stores.genres, "--recipe", "gtzan-ffnn", "--trials", "2", "--out",
                 str(tmp_path / "s2"), "--lr", "0.1"]) == 2
    assert "lr is searched by recipe gtzan-ffnn" in capsys.readouterr().err


def test_explore_draws_tsne_and_scores_kmeans_like_scikit_learn(trainer_stores, tmp_path, capsys):
    out = tmp_path / "explore"
    assert main(["explore", trainer_stores.genres, "--out", str(out), "--perplexity", "10"]) == 0
    assert "silhouette (K-means)" in capsys.readouterr().out
    summary = json.loads((out / "explore.json").read_text())
    store = open_store(trainer_stores.genres)
    ok = np.flatnonzero(store.status_for(("handcrafted",)) == OK)
    valid = valid_segments(store.array("length")[:][ok], store.spec.feature("handcrafted"))
    rows, segments = np.nonzero(valid)
    x = StandardScaler().fit_transform(store.array("handcrafted")[:][ok][rows, segments].astype(np.float64))
    assert summary["feature"] == "handcrafted" and summary["points"] == len(x) and summary["k"] == 4
    clusters = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(np.nan_to_num(x))
    assert summary["silhouette_kmeans"] == pytest.approx(silhouette_score(np.nan_to_num(x), clusters), abs=1e-9)
    assert -1 <= summary["silhouette_labels"] <= 1 and summary["adjusted_rand_index"] > 0.1  # genres do cluster
    points = pd.read_csv(out / "points.csv")
    assert len(points) == len(x) and set(points["label"]) == set(store.labels)
    manifest = store.manifest.set_index("clip_id")  # every point knows its group and split, as tsne.png colours them
    assert (points["group"].astype(str) == manifest.loc[points["clip_id"], "group"].astype(str).to_numpy()).all()
    assert (points["split"] == manifest.loc[points["clip_id"], "split"].to_numpy()).all()
    assert "| silhouette_kmeans |" in (out / "explore.md").read_text()
    _png(out / "tsne.png")
    # spectrograms: one point per clip (each band's mean and spread); waveforms are refused
    assert main(["explore", trainer_stores.tags, "--feature", "logmel", "--out", str(tmp_path / "l"),
                 "--split", "train"]) == 0
    logmel = json.loads((tmp_path / "l" / "explore.json").read_text())
    train = open_store(trainer_stores.tags).manifest["split"].eq("train").sum()
    assert logmel["points"] == logmel["clips"] == train and logmel["labels"] == "first label of each clip"
    assert main(["explore", trainer_stores.genres, "--feature", "waveform", "--out", str(tmp_path / "w")]) == 2
    assert "segment or spectrogram features" in capsys.readouterr().err
