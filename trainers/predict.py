"""Predict labels for new audio with a trained run, without its store.

The run's config holds the store's exact feature spec and its best checkpoint holds the
normalisation statistics, so a file goes through the very decode and feature code the store
was built with (`featurestore.audio.decode`, `featurestore.extract.FeatureExtractor`), is cast to
the store's dtypes, and meets the same evaluation views as the test split did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurestore.errors import UserError
from featurestore.spec import FeatureSpec
from trainers import checkpoint
from trainers.config import load_run
from trainers.inputs import average_views, valid_segments
from trainers.runtime import make_model
from trainers.tasks import Task


def predict_files(run: str, files: list[str], *, top: int = 5, which: str = checkpoint.BEST) -> list[dict[str, Any]]:
    """[{file, top: [{label, probability}], probabilities: {label: p}}] for each file, in order.

    Every file is decoded before anything is returned, so one bad file fails the call as a whole.
    """
    from featurestore.audio import AudioError, decode
    from featurestore.extract import FLOAT16_FEATURES, FeatureExtractor

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
    extractor = FeatureExtractor(spec.replace(features=config.input.arrays))

    batches = []
    for f in files:
        try:
            decoded = decode(f, spec)
            features = extractor(decoded.samples)
        except AudioError as exc:
            raise UserError(f"{f}: cannot use this audio: {exc.reason}") from None
        stored = {name: features[name].astype(np.float16 if name in FLOAT16_FEATURES else np.float32)
                  for name in config.input.arrays}  # what the store holds for this clip
        batch = {name: torch.from_numpy(values)[None] for name, values in stored.items()}
        if "handcrafted" in batch:
            batch["valid"] = torch.from_numpy(valid_segments(np.array([decoded.length]), spec))
        batches.append(batch)

    results = []
    with torch.no_grad():
        for f, batch in zip(files, batches):
            x, weights = pipeline(batch, train=False)
            prob = average_views(task.probabilities(model(x)), weights)[0].numpy()
            order = np.argsort(-prob, kind="stable")[:top]
            results.append({
                "file": str(f),
                "top": [{"label": labels[i], "probability": float(prob[i])} for i in order],
                "probabilities": {label: float(p) for label, p in zip(labels, prob)},
            })
    return results
