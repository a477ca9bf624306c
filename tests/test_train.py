"""Training from the CLI on small real stores: every model beats chance, runs are deterministic
and resumable, checkpoints reload to identical predictions, evaluate and predict work, and what a
user gets wrong ends in one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from helpers_store import build_store
from featurestore.cli import main
from featurestore.store import open_store
from trainers.config import load_run
from trainers.datasets import StoreDataset
from trainers.inputs import InputConfig
from trainers.predict import predict_files
from trainers.prepare import folds, open_data, run_splits
from trainers.runtime import infer, make_loader, make_model

pytest_plugins = ["helpers_store", "helpers_trainers"]
pytestmark = pytest.mark.usefixtures("one_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = ["--batch-size", "8", "--num-workers", "0", "--no-augment"]
TIMING = ["seconds", "samples_per_s", "data_wait"]
# Per recipe (together they cover every model): the overrides that fit the recipe to the tiny
# stores (1.5 s at 8 kHz: 47 frames, two 8000-sample crops) and to a run of a few seconds; every
# other value is the recipe's. Short runs must still clearly beat chance (4 balanced genres:
# accuracy 0.25, ROC-AUC 0.5); models with batch norm deep in the net need more steps first.
RECIPES = {
    "mtat-mlp": ("tags", ["--epochs", "3", "--lr", "3e-3"]),
    "mtat-cnn": ("tags", ["--epochs", "3", "--lr", "3e-3"]),
    "fma-nnet1": ("genres", ["--epochs", "6", "--batch-size", "4", "--lr", "1e-3", "--crop-samples", "4000"]),
    "fma-nnet2": ("genres", ["--epochs", "6", "--batch-size", "8", "--lr", "3e-3", "--crop-frames", "16"]),
    "gtzan-cnn3": ("genres", ["--epochs", "3", "--lr", "3e-3", "--crop-frames", "32", "--eval-crops", "3",
                              "--batch-size", "8"]),
    "gtzan-ffnn": ("genres", ["--epochs", "3", "--lr", "3e-3", "--batch-size", "8"]),
    "gtzan-cnn1d": ("genres", ["--epochs", "3", "--lr", "3e-3", "--batch-size", "8"]),
    # 12 epochs at the recipe's lr: 8 at 3e-3 stayed near chance on one CPU type
    "gtzan-c2f": ("genres", ["--epochs", "12", "--image-size", "32", "--batch-size", "8"]),
}
MIXNET = ["--epochs", "4", "--batch-size", "4", "--lr", "1e-3", "--crop-samples", "4000", "--crop-frames", "16"]


def _train(capsys, store, out, *args) -> int:
    code = main(["train", str(store), "--out", str(out), *FAST, *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code


def _metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    assert matplotlib.image.imread(path).ndim == 3


def _check_run(run: Path, store: str, epochs: int) -> dict:
    """What every finished run holds; returns its test metrics."""
    metrics = _metrics(run)
    manifest = open_store(store).manifest
    assert metrics["split"] == "test"
    assert metrics["n_clips"] == load_run(run)["resolved"]["clips"]["test"]
    assert metrics["n_clips"] <= len(manifest.query("error.isna()"))
    history = pd.read_csv(run / "history.csv")
    assert len(history) == epochs and np.isfinite(history[["train_loss", "val_loss"]]).all().all()
    figure = "confusion.png" if "confusion" in metrics else "cooccurrence.png"
    for name in ("config.json", "best.pt", "last.pt", "report.md", "curves.png", figure, "per_class.png",
                 "roc_pr.png"):
        assert (run / name).is_file(), name
    for png in run.glob("*.png"):
        _assert_png(png)
    state = torch.load(run / "best.pt", weights_only=True)
    assert {"model", "inputs", "epoch"} <= set(state)
    return metrics


def _beats_chance(metrics: dict) -> None:
    if "confusion" in metrics:
        assert metrics["roc_auc_macro"] > 0.75 and metrics["accuracy"] > 0.4, metrics
    else:
        assert metrics["roc_auc_macro"] > 0.65, metrics


@pytest.fixture(scope="module")
def recipe_run(trainer_stores, tmp_path_factory):
    """Trains a recipe (with its RECIPES overrides) once per module: (exit code, run folder)."""
    base, done = tmp_path_factory.mktemp("recipes"), {}

    def run(name: str) -> tuple[int, Path]:
        if name not in done:
            store = getattr(trainer_stores, RECIPES[name][0])
            code = main(["train", store, "--out", str(base / name), "--recipe", name, "--num-workers", "0",
                         *RECIPES[name][1]])
            done[name] = (code, base / name)
        return done[name]

    return run


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_trains_from_the_cli_and_beats_chance(name, recipe_run, trainer_stores, capsys):
    from trainers.recipes import recipe

    code, run = recipe_run(name)
    assert code == 0 and "Traceback" not in capsys.readouterr().err
    args = RECIPES[name][1]
    _beats_chance(_check_run(run, getattr(trainer_stores, RECIPES[name][0]), int(args[1])))
    # config.json records the recipe and every value it set that the flags did not override
    options = load_run(run)["options"]
    given = {a.removeprefix("--").replace("-", "_") for a in args if a.startswith("--")}
    assert options["recipe"] == name
    for key, value in recipe(name).options.items():
        if key not in given and key != "augment":
            assert options[key] == value, key
    if not recipe(name).options["augment"]:
        assert all(options[p] == 0 for p in ("wave_noise_p", "wave_mask_p", "time_mask_p", "freq_mask_p"))
    _check_predictions(run, trainer_stores)
    _check_published(run, recipe(name), overridden=given)


def _check_published(run: Path, recipe, overridden: set[str]) -> None:
    """The report's headline beside the run's value and interval, in metrics.json and report.md,
    with what differs: at least the split protocol and every recipe option the test overrode."""
    metrics, published = _metrics(run), recipe.published
    beside = metrics["published"]
    assert (beside["value"], beside["metric"], beside["report"]) == (published.value, published.metric,
                                                                    published.report)
    assert beside["ours"] == metrics[published.metric]
    low, high = beside["ours_interval"]
    assert low <= beside["ours"] <= high
    differences = " ".join(beside["differences"])
    assert "the report: " + published.protocol in differences
    assert all(f"{key} " in differences for key in overridden & set(recipe.options)), differences
    report = (run / "report.md").read_text()
    assert "## Beside the published result" in report and f"| {published.report} | {published.value:g} |" in report


def test_every_recipe_quotes_the_published_number_of_its_report(reference, capsys):
    """The numbers recipes quote are the reference document's, as the reports state them."""
    from trainers.recipes import RECIPES as ALL

    text = (reference / "reports" / "published-results.md").read_text()
    for r in ALL.values():
        shown = {f"{r.published.value:g}", f"{r.published.value:.4f}", f"{100 * r.published.value:.2f} %",
                 f"{100 * r.published.value:.1f} %"}
        assert r.published.report in text and any(s in text for s in shown), r.name
        assert all(f"{v:g}" in text or f"{v:.4f}" in text for v in r.published.also.values()), r.name
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert all(f"published: {r.published.setup}: {r.published.quote()}" in listing for r in ALL.values())


def _check_predictions(run: Path, stores) -> None:
    """predictions.parquet: one row per test clip (and per decoded segment where segments are
    scored), readable by pandas and duckdb, from which the reported metrics follow."""
    import duckdb

    metrics, resolved = _metrics(run), load_run(run)["resolved"]
    table = pd.read_parquet(run / "predictions.parquet")
    clips = table[table["level"] == "clip"]
    assert len(clips) == metrics["n_clips"] and clips["clip_id"].is_unique and (clips["split"] == "test").all()
    assert clips["view"].isna().all() and set(clips["group"]) <= set(open_store(resolved["store"]).manifest["group"])
    prob = clips[[f"prob_{label}" for label in resolved["labels"]]].to_numpy()
    truth = np.array([[label in row for label in resolved["labels"]] for row in clips["labels"]])
    if resolved["task"] == "multiclass":
        np.testing.assert_allclose(prob.sum(1), 1, atol=1e-4)
        assert np.isclose((prob.argmax(1) == truth.argmax(1)).mean(), metrics["accuracy"])
    segments = table[table["level"] == "segment"]
    if "levels" in metrics:  # descriptors scored segment by segment too
        assert len(segments) == metrics["levels"]["segments"]["n_segments"] and segments["view"].notna().all()
    else:
        assert segments.empty
    query = f"select count(*) from '{run / 'predictions.parquet'}' where level = 'clip'"
    assert duckdb.sql(query).fetchall()[0][0] == len(clips)
    # the group bootstrap's 95 % intervals, around the point estimates, in metrics.json and report.md
    assert metrics["n_groups"] == clips["group"].nunique() and metrics["bootstrap"]["resampled"] == "groups"
    for key in ("accuracy", "macro_f1"):
        low, high = metrics["intervals"][key]
        assert low - 1e-9 <= metrics[key] <= high + 1e-9, (key, low, metrics[key], high)
    assert {"f1_low", "f1_high", "recall_low", "roc_auc_high"} <= set(metrics["per_class"][0])
    report = (run / "report.md").read_text()
    assert f"{len(clips)} clips from {metrics['n_groups']} groups" in report and "| 95 % interval |" in report


def test_mixnet_recipe_starts_from_trained_encoders_and_keeps_them_frozen(recipe_run, trainer_stores, tmp_path,
                                                                           capsys):
    (code1, nnet1), (code2, nnet2) = recipe_run("fma-nnet1"), recipe_run("fma-nnet2")
    assert code1 == code2 == 0
    run = tmp_path / "mixnet"
    # a recipe's crops fit its report's preset; a store too short for them says which flag to pass
    assert main(["train", trainer_stores.genres, "--out", str(run), "--recipe", "fma-nnet1"]) == 2
    assert "recipe fma-nnet1 sets it for stores built with --preset fma" in capsys.readouterr().err
    # the report's MixNet needs its encoders: without --init-from the recipe says what to pass
    assert main(["train", trainer_stores.genres, "--out", str(run), "--recipe", "fma-mixnet"]) == 2
    assert "--init-from RUN_NNET1 RUN_NNET2" in capsys.readouterr().err
    assert main(["train", trainer_stores.genres, "--out", str(run), "--recipe", "fma-mixnet", "--num-workers", "0",
                 *MIXNET, "--init-from", str(nnet2), str(nnet1)]) == 0  # in either order
    _beats_chance(_check_run(run, trainer_stores.genres, 4))
    assert load_run(run)["options"]["freeze_encoders"] is True
    for checkpoint in ("best.pt", "last.pt"):
        mixed = torch.load(run / checkpoint, weights_only=True)
        for part, source in (("wave", nnet1), ("spec", nnet2)):
            encoder = torch.load(source / "best.pt", weights_only=True)["model"]
            mine = {k.removeprefix(f"{part}."): v for k, v in mixed["model"].items() if k.startswith(f"{part}.")}
            theirs = {k.removeprefix("encoder."): v for k, v in encoder.items() if k.startswith("encoder.")}
            assert mine.keys() == theirs.keys() and len(mine) > 10
            for key in mine:  # weights and batch-norm statistics alike
                assert torch.equal(mine[key], theirs[key]), (part, key)
        assert torch.equal(mixed["inputs"]["mfcc_mean"],
                           torch.load(nnet2 / "best.pt", weights_only=True)["inputs"]["mfcc_mean"])
    # runs of the wrong model, or none of one kind, are refused in one line
    assert main(["train", trainer_stores.genres, "--out", str(tmp_path / "x"), "--recipe", "fma-mixnet", *MIXNET,
                 "--init-from", str(nnet1), str(nnet1)]) == 2
    assert "no nnet2 run among them" in capsys.readouterr().err


def test_multilabel_task_follows_from_the_manifest(trainer_stores, tmp_path, capsys):
    run = tmp_path / "tags"
    assert _train(capsys, trainer_stores.tags, run, "--model", "cnn4", "--epochs", "3", "--lr", "3e-3") == 0
    config = load_run(run)["resolved"]
    assert config["task"] == "multilabel" and config["monitor_column"] == "val_roc_auc_macro"
    metrics = _metrics(run)
    assert metrics["roc_auc_macro"] > 0.65, metrics
    assert len(metrics["cooccurrence_true"]) == 4 and "confusion" not in metrics
    _assert_png(run / "cooccurrence.png")
    report = (run / "report.md").read_text()
    assert "| **macro avg** |" in report and "| AUC |" in report


def test_runs_are_deterministic_and_resume_exactly(trainer_stores, tmp_path, capsys):
    args = ["--model", "mlp", "--epochs", "2", "--num-workers", "2", "--augment"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _train(capsys, trainer_stores.genres, a, *args) == 0
    assert _train(capsys, trainer_stores.genres, b, *args) == 0
    history_a = pd.read_csv(a / "history.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(history_a, pd.read_csv(b / "history.csv").drop(columns=TIMING))
    # interrupted after epoch 1, resumed to 2: the same as the uninterrupted run
    assert _train(capsys, trainer_stores.genres, c, *args[:3], "1", *args[4:]) == 0
    assert _train(capsys, trainer_stores.genres, c, *args, "--resume") == 0
    pd.testing.assert_frame_equal(history_a, pd.read_csv(c / "history.csv").drop(columns=TIMING))
    assert _metrics(a) == _metrics(c)
    # resuming with other settings, or training into an existing run, is refused
    assert main(["train", trainer_stores.genres, "--out", str(c), *FAST, *args, "--lr", "0.1", "--resume"]) == 2
    assert "other lr" in capsys.readouterr().err
    assert main(["train", trainer_stores.genres, "--out", str(c), *FAST, *args]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_device_options_train_and_are_recorded(trainer_stores, tmp_path, capsys):
    """--channels-last, --compile (this machine has a C++ compiler: torch.compile works) and
    --precision train on the CPU; config.json records what was asked and what the device allowed."""
    run = tmp_path / "fast"
    assert _train(capsys, trainer_stores.genres, run, "--model", "cnn4", "--epochs", "3", "--lr", "3e-3",
                  "--crop-frames", "40", "--channels-last", "--compile", "--precision", "auto") == 0
    saved = load_run(run)
    options, resolved = saved["options"], saved["resolved"]
    assert (options["channels_last"], options["compile"], options["precision"]) == (True, True, "auto")
    assert (resolved["precision"], resolved["channels_last"]) == ("fp32", True)  # no autocast on the CPU
    assert resolved["compile"] is True and resolved["compile_note"] is None
    assert _metrics(run)["accuracy"] > 0.5
    assert (pd.read_csv(run / "history.csv")["data_wait"].between(0, 1)).all()
    # mixed precision needs a GPU: one line, before anything is written
    assert main(["train", trainer_stores.genres, "--out", str(tmp_path / "bf16"), *FAST, "--model", "mlp",
                 "--precision", "bf16"]) == 2
    assert "--precision bf16 needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "bf16").exists()
    # a run recorded before --precision (with "amp") still loads: --no-amp was float32
    old = json.loads((run / "config.json").read_text())
    old["train"].pop("precision")
    old["train"]["amp"] = False
    (run / "config.json").write_text(json.dumps(old))
    assert load_run(run)["train"].precision == "fp32"


def test_fp16_steps_scale_their_gradients(trainer_stores, tmp_path):
    """--precision fp16 (GPUs without bf16): autocast to float16 and a GradScaler around each step.
    Run here on the CPU, whose autocast has float16 too, through the real training step."""
    from trainers.config import TrainConfig
    from trainers.loop import Fit
    from trainers.runtime import Acceleration

    config = TrainConfig(store=trainer_stores.genres, model="cnn4", out=str(tmp_path), input=InputConfig("logmel"),
                         num_workers=0, batch_size=8)
    data = open_data(config.store, config.input)
    fast = Acceleration("fp16", channels_last=True, compile=False)
    fit = Fit(config, data, data.splits["train"], data.splits["valid"], tmp_path, "val_accuracy",
              torch.device("cpu"), progress=False, acceleration=fast)
    assert fit.scaler.is_enabled() and fit.scaler.get_scale() == 2.0**16
    before = [p.detach().clone() for p in fit.model.parameters()]
    fit.train_set.set_epoch(1)
    loss = fit.step(next(iter(make_loader(fit.train_set, batch_size=8, workers=0, device=torch.device("cpu")))))
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, fit.model.parameters()))
    assert "scaler" in fit._checkpoint(full=True)


def test_compile_falls_back_to_eager_with_one_line_where_the_machine_cannot_compile(trainer_stores, tmp_path):
    """No working C++ compiler for inductor (CXX points nowhere): one line says so, the run trains
    eagerly, and config.json records why."""
    run = tmp_path / "eager"
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler")}
    done = subprocess.run([sys.executable, "-m", "featurestore.cli", "train", trainer_stores.genres, "--out", str(run),
                           *FAST, "--model", "mlp", "--epochs", "1", "--compile"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("--compile:")]
    assert len(lines) == 1 and "cannot compile on this machine" in lines[0] and "training without it" in lines[0]
    assert "Traceback" not in done.stderr
    resolved = load_run(run)["resolved"]
    assert resolved["compile"] is False and "compiler" in resolved["compile_note"].lower()


@pytest.fixture(scope="module")
def trained(trainer_stores, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", trainer_stores.genres, "--out", str(run), "--model", "cnn4", "--epochs", "2",
                 "--crop-frames", "40", "--eval-crops", "2", *FAST]) == 0
    return run


def test_checkpoint_reloads_to_identical_predictions_and_evaluate_recomputes(trained, trainer_stores, dask_cluster,
                                                                            tmp_path, capsys):
    saved = load_run(trained)
    config = saved["train"]
    data = open_data(trainer_stores.genres, config.input)
    state = torch.load(trained / "best.pt", weights_only=True)
    model, pipeline = make_model(config.model, data.spec, config.input, len(data.labels))
    model.load_state_dict(state["model"])
    pipeline.load_state_dict(state["inputs"])
    loader = make_loader(StoreDataset.over(data.source(data.splits["test"], config.input)), batch_size=5, workers=0,
                         device=torch.device("cpu"))
    y, prob, index, *_ = infer(model, pipeline, loader, data.task, torch.device("cpu"))
    again = infer(model, pipeline, loader, data.task, torch.device("cpu")).prob
    np.testing.assert_array_equal(prob, again)
    expected = data.task.evaluate(y, prob).summary
    assert main(["evaluate", str(trained)]) == 0
    recomputed = _metrics(trained / "eval-test")
    for key in ("accuracy", "macro_f1", "roc_auc_macro"):
        assert recomputed[key] == pytest.approx(expected[key], abs=1e-12) == _metrics(trained)[key]
    assert "accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(trained), "--split", "valid", "--out", str(trained / "v")]) == 0
    assert _metrics(trained / "v")["n_clips"] == len(data.splits["valid"])
    valid = pd.read_parquet(trained / "v" / "predictions.parquet")
    assert (valid["split"] == "valid").all() and len(valid) == len(data.splits["valid"])
    assert pd.read_parquet(trained / "eval-test" / "predictions.parquet").equals(
        pd.read_parquet(trained / "predictions.parquet")), "evaluate recomputes train's test predictions exactly"
    for png in (trained / "v").glob("*.png"):
        _assert_png(png)
    # another store is judged by the run's input arrays: the tags store's log-mel has the run's
    # settings (its task does not fit); a log-mel with other settings is refused
    assert main(["evaluate", str(trained), "--store", trainer_stores.tags]) == 2
    assert "carry several labels" in capsys.readouterr().err
    other = tmp_path / "other.zarr"
    spec = open_store(trainer_stores.tags).spec.select(["logmel"]).replace(n_mels=64)
    build_store(trainer_stores.tags_manifest, trainer_stores.tags_audio, other, spec,
                scheduler=dask_cluster.scheduler_address, progress=False)
    assert main(["evaluate", str(trained), "--store", str(other)]) == 2
    assert "another feature spec for logmel" in capsys.readouterr().err


def test_predict_decodes_new_files_like_the_store_did(trained, trainer_stores, capsys):
    config = load_run(trained)["train"]
    store = open_store(trainer_stores.genres)
    data = open_data(trainer_stores.genres, config.input)
    test = data.splits["test"][:3]
    files = [str(trainer_stores.genre_audio / p) for p in store.manifest["path"].iloc[test]]
    results = list(predict_files(str(trained), files, top=2))
    state = torch.load(trained / "best.pt", weights_only=True)
    model, pipeline = make_model(config.model, data.spec, config.input, len(data.labels))
    model.load_state_dict(state["model"])
    pipeline.load_state_dict(state["inputs"])
    loader = make_loader(StoreDataset.over(data.source(test, config.input)), batch_size=8, workers=0,
                         device=torch.device("cpu"))
    prob = infer(model, pipeline, loader, data.task, torch.device("cpu")).prob
    for result, p in zip(results, prob):
        got = np.array([result["probabilities"][label] for label in data.labels])
        np.testing.assert_allclose(got, p, atol=1e-6)  # the same features as the store's, the same output
        assert result["top"][0]["label"] == data.labels[int(p.argmax())] and len(result["top"]) == 2
    assert main(["predict", str(trained), *files[:2], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in printed] == files[:2] and sum(printed[0]["probabilities"].values()) == pytest.approx(1)
    assert main(["predict", str(trained), files[0]]) == 0
    assert capsys.readouterr().out.startswith(f"{files[0]}: ")


def test_predict_reports_each_bad_file_goes_on_and_writes_a_csv(trained, trainer_stores, tmp_path, capsys):
    """Files, a folder and a quoted glob in one call; a broken and a missing file are reported
    and every other file is still labelled; exit 1; the CSV has a row per file."""
    store = open_store(trainer_stores.genres)
    ok = store.manifest[store.manifest["error"].isna()]["path"]
    broken = [p for p, e in zip(store.manifest["path"], store.manifest["error"]) if e][0]
    audio = trainer_stores.genre_audio
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for i, path in enumerate(ok.iloc[:2]):
        (folder / ("sub" if i else "") / Path(path).name).write_bytes((audio / path).read_bytes())
    first, good = str(audio / ok.iloc[2]), str(audio / ok.iloc[3])
    pattern = str(audio / Path(ok.iloc[3]).parent / "*.nomatch")
    args = [first, str(audio / broken), str(tmp_path / "missing.wav"), str(folder), pattern, good]
    code = main(["predict", str(trained), *args, "--csv", str(tmp_path / "out" / "predictions.csv")])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    labelled = [line.split(": ")[0] for line in captured.out.splitlines()]
    in_folder = sorted(str(p) for p in folder.rglob("*.*"))
    assert labelled == [first, *in_folder, good]
    errors = captured.err.splitlines()
    assert [e.split(": cannot use this audio: ")[0] for e in errors[:-1]] == [str(audio / broken),
                                                                           str(tmp_path / "missing.wav"), pattern]
    assert "no file matches this pattern" in errors[2]
    assert errors[-1] == "featurestore predict: 3 of 7 file(s) could not be used (listed above)"
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert table["file"].tolist() == [first, str(audio / broken), str(tmp_path / "missing.wav"), *in_folder, pattern,
                                      good]
    assert table["error"].notna().tolist() == [False, True, True, False, False, True, False]
    labels = list(store.labels)
    assert list(table.columns) == ["file", "error", "top_label", "top_probability", *labels]
    done = table[table["error"].isna()]
    np.testing.assert_allclose(done[labels].sum(axis=1), 1, atol=1e-5)
    assert (done["top_label"] == done[labels].idxmax(axis=1)).all()
    assert main(["predict", str(trained), first, "--csv", str(tmp_path / "one.csv")]) == 0


def test_incomplete_store_is_refused_naming_the_pending_clips(interrupted_store, tmp_path, capsys):
    store = open_store(interrupted_store)
    assert main(["train", interrupted_store, "--model", "mlp", "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{store.n_pending} of {store.n_clips} clips pending" in err and "--allow-partial" in err
    assert not (tmp_path / "r").exists()
    assert _train(capsys, interrupted_store, tmp_path / "p", "--model", "mlp", "--epochs", "1", "--allow-partial") == 0
    assert load_run(tmp_path / "p")["resolved"]["clips"]["train"] == int(
        ((store.status == 1) & (store.manifest["split"] == "train").to_numpy()).sum())


def test_wrong_input_kind_or_missing_feature_is_one_clear_line(trainer_stores, tmp_path, capsys):
    genres, tags = trainer_stores.genres, trainer_stores.tags
    assert main(["train", genres, "--model", "nnet1", "--input", "logmel", "--out", str(tmp_path / "a")]) == 2
    assert "nnet1 reads waveform (or any waveform feature) input, not logmel" in capsys.readouterr().err
    assert main(["train", tags, "--model", "ffnn", "--out", str(tmp_path / "b")]) == 2
    assert "has no handcrafted array" in capsys.readouterr().err
    assert main(["train", tags, "--model", "mlp", "--task", "multiclass", "--out", str(tmp_path / "c")]) == 2
    assert "carry several labels" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cross_validation_keeps_groups_apart_and_reports_mean_and_std(trainer_stores, tmp_path, capsys):
    run = tmp_path / "cv"
    assert _train(capsys, trainer_stores.genres, run, "--model", "ffnn", "--epochs", "1", "--folds", "3") == 0
    summary = _metrics(run)
    assert summary["folds"] == 3 and len(summary["test"]["per_fold"]) == 3
    assert set(summary["valid"]["mean"]) >= {"accuracy", "macro_f1", "roc_auc_macro"}
    assert summary["test"]["std"]["accuracy"] >= 0
    assert "±" in (run / "report.md").read_text()
    data = open_data(trainer_stores.genres, InputConfig("handcrafted"))
    parts = folds(data, 3, seed=0)
    pool = np.concatenate([data.splits["train"], data.splits["valid"]])
    assert sorted(np.concatenate([held for _, held in parts])) == sorted(pool)
    for train, held in parts:
        assert not set(data.groups[train]) & set(data.groups[held])
    for k in (1, 2, 3):
        assert (run / f"fold_{k}" / "best.pt").is_file() and (run / f"fold_{k}" / "metrics.json").is_file()
    # each fold normalises with statistics of its own training part, never the held-out one
    values = open_store(trainer_stores.genres).array("handcrafted")[:].astype(np.float64)
    for k, (train, _) in enumerate(parts, start=1):
        stats = torch.load(run / f"fold_{k}" / "best.pt", weights_only=True)["inputs"]
        np.testing.assert_allclose(stats["handcrafted_mean"].numpy(), values[train].mean(axis=(0, 1)), rtol=1e-5,
                                   atol=1e-6)
        assert not np.allclose(stats["handcrafted_mean"].numpy(), data.stats["handcrafted"][0], rtol=1e-7, atol=0)


def test_split_70_30_keeps_groups_apart_and_reports_segments_and_tracks(recipe_run, trainer_stores, capsys):
    code, run = recipe_run("gtzan-ffnn")  # --split 70/30 (the GTZAN features report), valid from train
    assert code == 0
    saved = load_run(run)
    clips = saved["resolved"]["clips"]
    total = sum(clips.values())
    assert total == sum(len(v) for v in open_data(trainer_stores.genres, InputConfig("handcrafted")).splits.values())
    assert abs(clips["test"] / total - 0.3) < 0.08 and 0 < clips["valid"] < clips["train"] / 4
    data = run_splits(open_data(trainer_stores.genres, InputConfig("handcrafted")), saved["train"])
    split_groups = [set(data.groups[data.splits[s]]) for s in ("train", "valid", "test")]
    assert all(not a & b for i, a in enumerate(split_groups) for b in split_groups[i + 1:])
    values = open_store(trainer_stores.genres).array("handcrafted")[:].astype(np.float64)
    stats = torch.load(run / "best.pt", weights_only=True)["inputs"]
    np.testing.assert_allclose(stats["handcrafted_mean"].numpy(), values[data.splits["train"]].mean(axis=(0, 1)),
                               rtol=1e-5, atol=1e-6)
    metrics = _metrics(run)
    protocol = metrics["split_protocol"]  # the test set is not the manifest's, and everything says so
    assert protocol["source"] == "re-split" and protocol["clips"] == clips and protocol["recipe"] == "gtzan-ffnn"
    assert all(protocol["groups"][s] >= 1 for s in clips)
    sizes = f"{clips['train']} train clips ({protocol['groups']['train']} groups)"
    assert "NOT the manifest's test set" in (run / "report.md").read_text() and sizes in (run / "report.md").read_text()
    segments = metrics["levels"]["segments"]
    assert metrics["n_clips"] == clips["test"] and segments["n_segments"] > metrics["n_clips"]
    assert 0 <= segments["accuracy"] <= 1 and "## Per segment" in (run / "report.md").read_text()
    # evaluate finds the same split again from the run's seed
    assert main(["evaluate", str(run)]) == 0
    again = _metrics(run / "eval-test")
    assert again["accuracy"] == metrics["accuracy"] and again["levels"] == metrics["levels"]
    capsys.readouterr()


def test_compare_pairs_runs_on_the_same_clips_and_refuses_other_test_sets(recipe_run, tmp_path, capsys):
    from scipy.stats import binomtest

    ffnn, cnn1d, cnn3, mlp = (recipe_run(n)[1] for n in ("gtzan-ffnn", "gtzan-cnn1d", "gtzan-cnn3", "mtat-mlp"))
    capsys.readouterr()
    assert main(["compare", str(ffnn), str(cnn1d), str(ffnn), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "cnn1d against gtzan-ffnn" in out.replace("gtzan-cnn1d", "cnn1d") and "McNemar" in out
    result = json.loads((tmp_path / "c" / "compare.json").read_text())
    a, b = _metrics(ffnn), _metrics(cnn1d)
    versus_cnn1d, versus_itself = result["runs"]
    assert result["clips"] == a["n_clips"] and result["groups"] == a["n_groups"]
    for metric in ("accuracy", "macro_f1", "macro_precision", "roc_auc_macro"):
        row = versus_cnn1d["metrics"][metric]
        assert row["baseline"] == pytest.approx(a[metric]) and row["run"] == pytest.approx(b[metric])
        assert row["low"] <= row["difference"] <= row["high"]
        same = versus_itself["metrics"][metric]  # the same resample for both: no spread at all
        assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    clips = [pd.read_parquet(r / "predictions.parquet").query("level == 'clip'").set_index("clip_id")
             for r in (ffnn, cnn1d)]
    right = []
    for frame in clips:
        frame = frame.loc[clips[0].index]
        probs = frame[[c for c in frame if c.startswith("prob_")]].to_numpy()
        names = np.array([c.removeprefix("prob_") for c in frame if c.startswith("prob_")])
        right.append(names[probs.argmax(1)] == np.array([labels[0] for labels in frame["labels"]]))
    only_a, only_b = int((right[0] & ~right[1]).sum()), int((~right[0] & right[1]).sum())
    assert versus_cnn1d["mcnemar"]["baseline_only"] == only_a and versus_cnn1d["mcnemar"]["run_only"] == only_b
    expected = binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
    assert versus_cnn1d["mcnemar"]["p_value"] == pytest.approx(expected)
    assert versus_itself["mcnemar"] == {"baseline_only": 0, "run_only": 0, "p_value": 1.0}
    assert "## cnn1d" not in (tmp_path / "c" / "compare.md").read_text()
    _assert_png(tmp_path / "c" / "compare.png")

    for other, why in ((cnn3, "different test sets (the manifest's splits vs a --split 70/30 re-split"),
                       (mlp, "stores built from different manifests")):
        assert main(["compare", str(ffnn), str(other), "--out", str(tmp_path / "refused")]) == 2
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1 and str(other) in err
    assert not (tmp_path / "refused").exists()


def test_cnn4_on_whole_long_clips_gets_the_size_warning_before_training(dask_cluster, tmp_path, capsys):
    """A store of 10-s clips with GTZAN's 128 bands and about its frames per clip (1,251): cnn4 on
    whole clips is 6x the model its recipe was designed for, and training says so in one line."""
    import featurestore
    import manifests
    from featurestore.presets import preset
    from featurestore.synth import CorpusConfig, generate_corpus

    corpus = generate_corpus(CorpusConfig(root=tmp_path / "corpus", clips_per_style=5, seconds=10.0,
                                          styles=("ambient", "rock"), n_broken=0, formats=("WAV",)))
    manifests.save(manifests.adapters.folder(corpus.root / "genres", split="60/20/20", seed=0), tmp_path / "m.parquet")
    spec = preset("gtzan").select(["logmel"]).replace(sample_rate=8000, duration=10.0, n_fft=256, hop=64)
    featurestore.build(tmp_path / "m.parquet", audio_root=corpus.root / "genres", out=tmp_path / "long.zarr",
                       spec=spec, scheduler=dask_cluster.scheduler_address, progress=False)
    capsys.readouterr()
    assert main(["train", str(tmp_path / "long.zarr"), "--out", str(tmp_path / "run"), *FAST, "--model", "cnn4",
                 "--epochs", "1", "--batch-size", "2"]) == 0
    whole = capsys.readouterr().out
    assert main(["train", str(tmp_path / "long.zarr"), "--out", str(tmp_path / "cropped"), *FAST, "--model", "cnn4",
                 "--epochs", "1", "--crop-frames", "313"]) == 0
    warning = [line for line in whole.splitlines() if line.startswith("warning: cnn4")]
    parameters = load_run(tmp_path / "run")["resolved"]["parameters"]
    assert len(warning) == 1 and f"cnn4 on logmel (1,128,1251) has {parameters:,} parameters" in warning[0]
    assert warning[0].endswith("--crop-frames 313") and parameters > 3 * load_run(tmp_path / "cropped")[
        "resolved"]["parameters"]
    assert "warning: cnn4" not in capsys.readouterr().out  # the fix silences it


def test_split_manifest_undoes_a_recipes_re_split(trainer_stores, tmp_path, capsys):
    run = tmp_path / "manifest-split"
    assert _train(capsys, trainer_stores.genres, run, "--recipe", "gtzan-ffnn", "--split", "manifest",
                  "--epochs", "1") == 0
    data = open_data(trainer_stores.genres, InputConfig("handcrafted"))
    protocol = _metrics(run)["split_protocol"]
    assert protocol["source"] == "manifest" and protocol["clips"] == {s: len(v) for s, v in data.splits.items()}
    assert "the manifest's splits" in (run / "report.md").read_text()
    assert load_run(run)["options"]["split"] is None
    assert "split manifest (recipe 70/30)" in " ".join(
        _metrics(run)["published"]["differences"])


def test_plateau_scheduler_and_early_stopping(trainer_stores, tmp_path, capsys):
    # ffnn has no batch norm: with a vanishing learning rate its validation accuracy cannot move
    run = tmp_path / "stop"
    assert _train(capsys, trainer_stores.genres, run, "--model", "ffnn", "--epochs", "6", "--lr", "1e-6",
                  "--weight-decay", "0", "--lr-patience", "0", "--patience", "2") == 0
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]  # epoch 1 best, two epochs without improvement, stop
    assert list(history["lr"]) == pytest.approx([1e-6, 1e-6, 5e-7])
    assert _metrics(run)["epoch"] == 1


def test_options_layer_defaults_recipe_file_and_flags(tmp_path, capsys):
    from trainers.options import DEFAULTS, resolve, to_config
    from trainers.recipes import RECIPES

    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in RECIPES) and "not stated in the report" in listing
    fma = resolve(recipe="fma-nnet1")
    assert (fma["lr"], fma["batch_size"], fma["weight_decay"], fma["monitor"]) == (1e-4, 64, 0.005, "val_loss")
    config = to_config("s.zarr", "r", fma)
    assert config.augment.wave_mask_p == 1.0 and config.augment.wave_noise_p == 0.5  # each its own probability
    assert to_config("s.zarr", "r", resolve(flags={"model": "cnn4", "augment": False})).augment.time_mask_p == 0
    plain = to_config("s.zarr", "r", resolve(flags={"model": "cnn4", "aug_prob": 0.2, "wave_mask_p": 0.9}))
    assert plain.augment.time_mask_p == 0.2 and plain.augment.wave_mask_p == 0.9 and plain.scheduler == "plateau"
    file = tmp_path / "options.json"
    file.write_text(json.dumps({"recipe": "mtat-cnn", "lr": 3e-4, "epochs": 7}))
    layered = resolve(config_file=str(file), flags={"epochs": 2})
    assert (layered["model"], layered["lr"], layered["epochs"], layered["scheduler"]) == ("cnn4", 3e-4, 2, "none")
    assert resolve(flags={"model": "mlp"})["epochs"] == DEFAULTS["epochs"]
    file.write_text(json.dumps({"learning_rate": 1}))
    assert main(["train", "s.zarr", "--out", str(tmp_path / "r"), "--config", str(file)]) == 2
    assert "unknown option(s) learning_rate" in capsys.readouterr().err
    assert main(["train", "s.zarr", "--out", str(tmp_path / "r")]) == 2
    assert "needs --model NAME or --recipe NAME" in capsys.readouterr().err
    assert main(["train", "s.zarr", "--out", str(tmp_path / "r"), "--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("options, key", [
    ({"lr": "abc"}, "lr"), ({"options": {"lr": "x"}}, "lr"), ({"batch_size": 1e12}, "batch_size"),
    ({"seed": "abc"}, "seed"), ({"epochs": 0}, "epochs"), ({"aug_prob": 1.5}, "aug_prob"),
    ({"num_workers": -1}, "num_workers"), ({"precision": "fp8"}, "precision"), ({"augment": "yes"}, "augment"),
    ({"init_from": "run"}, "init_from"), ({"valid_fraction": 1.0}, "valid_fraction"),
])
def test_config_file_values_are_checked_like_flags(options, key, tmp_path, capsys):
    """A --config file's values are typed and ranged as the flags are, for `train` and `tune` alike:
    one line naming the option and its value, no traceback, nothing written."""
    file = tmp_path / "options.json"
    file.write_text(json.dumps({"model": "mlp", **options}))
    assert main(["train", "s.zarr", "--out", str(tmp_path / "run"), "--config", str(file)]) == 2
    err = capsys.readouterr().err
    assert f"--config {file}: {key}:" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    value = json.dumps((options.get("options") or options)[key])
    assert value[:20] in err
    assert not (tmp_path / "run").exists()


def test_tune_options_are_checked_like_train_options(tmp_path, capsys):
    assert main(["tune", "s.zarr", "--recipe", "mtat-cnn", "--trials", "1", "--out", str(tmp_path / "t"),
                 "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "epochs" in err and "Traceback" not in err
