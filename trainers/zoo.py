"""`featurestore models`: the registry as a table, parameters counted for real input shapes."""

from __future__ import annotations

from featurestore.presets import preset
from trainers.inputs import InputConfig
from trainers.models import MODELS, build_model, count_parameters


def model_table(store: str | None = None, classes: int = 50) -> str:
    """One row per model: name, natural input and its shape, other inputs, parameters, source.

    Shapes come from `store` (and its label count), else from the mtat-seed preset (the
    handcrafted preset for descriptor models).
    """
    if store:
        from featurestore.store import open_store

        opened = open_store(store)
        specs = {kind: opened.spec for kind in ("spectral", "handcrafted")}
        classes = len(opened.labels)
    else:
        specs = {"spectral": preset("mtat-seed"), "handcrafted": preset("handcrafted")}
    rows = [("model", "input", "shape", "also reads", "parameters", "from")]
    for info in MODELS.values():
        kind = info.natural_input
        spec = specs["handcrafted" if kind == "handcrafted" else "spectral"]
        missing = [a for a in InputConfig(kind).arrays if a not in spec.arrays]
        if missing:
            shape, params = f"store lacks {','.join(missing)}", "-"
        else:
            sample = InputConfig(kind).sample_shape(spec)
            shape = str(sample).replace(" ", "")
            features = InputConfig(kind).features(spec)
            params = f"{count_parameters(build_model(info.name, features, sample, classes)):,}"
        others = ",".join([*info.inputs[1:], *(f"any {layout} feature" for layout in info.layouts)]) or "-"
        rows.append((info.name, kind, shape, others, params, info.source))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    return "\n".join(lines) + f"\n\nparameters for {classes} classes"
