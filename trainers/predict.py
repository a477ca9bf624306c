"""Predict labels for new audio with a trained run, without its store.

The run's config holds the store's exact feature spec and its best checkpoint holds the
normalisation statistics, so a file goes through the very decode and feature code the store
was built with (`featurestore.audio.decoder`, `featurestore.features.extract.FeatureExtractor`), is cast to
the store's dtypes, and meets the same evaluation views as the test split did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from featurestore.errors import UserError
from featurestore.progress import Progress
from featurestore.spec import FeatureSpec
from trainers import checkpoint
from trainers.config import load_run
from trainers.inputs import average_views, valid_segments
from trainers.runtime import make_model
from trainers.tasks import Task
from trainers.windows import Windows


def audio_inputs(items: list[str]) -> list[tuple[str, str | None]]:
    """(file, error) for each file the items name, in order: a file as given, a folder's audio
    files (recursively, sorted), a quoted glob pattern's matches. An item that names nothing
    usable is kept with its error, so that every input gets a row."""
    import glob
    import os

    from manifests.paths import scan_audio

    out: list[tuple[str, str | None]] = []
    for item in items:
        if os.path.isdir(item):
            files, _ = scan_audio(Path(item))
            out += [(os.path.join(item, f), None) for f in files] or [(item, "no audio files in this folder")]
        elif os.path.lexists(item) or not glob.has_magic(item):
            out.append((item, None))  # a missing file fails in decode with its reason
        else:
            matches = sorted(glob.glob(item, recursive=True))
            out += [(m, None) for m in matches] or [(item, "no file matches this pattern")]
    return out


def predict_files(run: str, items: list[str], *, top: int = 5,
                  which: str = checkpoint.BEST) -> Iterator[dict[str, Any]]:
    """{file, error, top: [{label, probability}], probabilities: {label: p}} for each file that
    `items` name (`audio_inputs`), in order, one at a time. A file that cannot be used gets its
    reason in `error` (and no probabilities); the files after it are still labelled."""
    from featurestore.audio import AudioError, decode
    from featurestore.features.extract import FeatureExtractor

    saved = load_run(run)
    config, resolved = saved["train"], saved["resolved"]
    if resolved.get("folds") and not resolved.get("fold"):
        raise UserError(f"{run} is a cross-validation: predict with one fold's run, e.g. {run}/fold_1")
    spec = FeatureSpec.from_dict(resolved["spec"])
    labels = resolved["labels"]
    task = Task(resolved["task"], tuple(labels))
    state = checkpoint.load(Path(run) / which)
    model, pipeline = make_model(config.model, spec, config.input, len(labels))
    model.load_state_dict(state["model"])
    pipeline.load_state_dict(state["inputs"])
    model.eval()
    extractor = FeatureExtractor(spec, config.input.arrays)
    windows = Windows(spec, config.input)
    segments = next((f for f in config.input.features(spec) if f.layout == "segments"), None)

    inputs = audio_inputs(items)
    # lines, not a bar: the command prints a line per file, and a silent --json run still reports
    with Progress(len(inputs), label="predict", unit="files", bar=False) as progress:
        for f, error in inputs:
            if error is None:
                try:
                    decoded = decode(f, spec.decoding)
                    features = extractor(decoded.samples)
                except AudioError as exc:
                    error = exc.reason
            if error is not None:
                progress.update()
                yield {"file": f, "error": error, "top": [], "probabilities": {}}
                continue
            stored = {name: features[name].astype(spec.feature(name).dtype)
                      for name in config.input.arrays}  # what the store holds for this clip
            batch = windows({name: [values] for name, values in stored.items()}, train=False)
            if segments is not None:
                batch["valid"] = torch.from_numpy(valid_segments(np.array([decoded.length]), segments))
            with torch.no_grad():
                x, weights = pipeline(batch, train=False)
                prob = average_views(task.probabilities(model(x)), weights)[0].numpy()
            order = np.argsort(-prob, kind="stable")[:top]
            progress.update()
            yield {
                "file": f,
                "error": None,
                "top": [{"label": labels[i], "probability": float(prob[i])} for i in order],
                "probabilities": {label: float(p) for label, p in zip(labels, prob)},
            }


def predictions_table(results: list[dict[str, Any]]) -> Any:
    """One row per file: file, error, top_label, top_probability, then every label's probability."""
    import pandas as pd

    return pd.DataFrame([{"file": r["file"], "error": r["error"],
                          "top_label": r["top"][0]["label"] if r["top"] else None,
                          "top_probability": r["top"][0]["probability"] if r["top"] else None,
                          **r["probabilities"]} for r in results])
