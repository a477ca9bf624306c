"""Starting a model from trained runs: MixNet from an NNET1 run's and an NNET2 run's encoders.

The FMA report trains NNET1 on waveforms and NNET2 on MFCCs first, then fuses their encoders
and tunes only the classifier. Each encoder arrives with the normalisation its run trained
under, and must have read the same stored values the fused model reads.
"""

from __future__ import annotations

from pathlib import Path

from featurestore.errors import UserError
from trainers import checkpoint
from trainers.config import load_run, trained_on
from trainers.inputs import InputPipeline
from trainers.models.mixnet import MixNet

# mixnet part -> (the model whose `encoder` it takes, the input array that encoder reads)
PARTS = {"wave": ("nnet1", "waveform"), "spec": ("nnet2", "mfcc")}


def init_from_runs(model, pipeline: InputPipeline, runs: tuple[str, ...], arrays_hash, freeze: bool) -> None:
    """Copy each run's best encoder (and its input statistics) into `model`; freeze them if asked.

    `arrays_hash(names)` gives the training store's identity of those arrays' values."""
    if not isinstance(model, MixNet):
        raise UserError("--init-from starts a mixnet from an nnet1 and an nnet2 run; other models train from scratch")
    by_model = {}
    for run in runs:
        saved = load_run(run)
        by_model.setdefault(saved["train"].model, (run, saved["resolved"]))
    for part, (name, array) in PARTS.items():
        if name not in by_model:
            raise UserError(f"--init-from {' '.join(runs)}: no {name} run among them: give one fma-nnet1 (nnet1) and "
                            "one fma-nnet2 (nnet2) run")
        run, resolved = by_model[name]
        if trained_on(resolved, (array,)) != arrays_hash((array,)):
            raise UserError(f"--init-from {run}: that {name} run read {array} built with other settings than this "
                            f"store's: train it on this store (or one built with the same spec)")
        state = checkpoint.load(Path(run) / checkpoint.BEST)
        encoder = {k.removeprefix("encoder."): v for k, v in state["model"].items() if k.startswith("encoder.")}
        getattr(model, part).load_state_dict(encoder)
        for stat in ("mean", "std"):
            key = f"{array}_{stat}"
            if key in state["inputs"]:
                getattr(pipeline, key).copy_(state["inputs"][key])
    if freeze:
        model.freeze_encoders()
