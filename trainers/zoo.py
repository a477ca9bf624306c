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


def size_warning(model: str, spec, inputs: InputConfig, classes: int, parameters: int) -> str | None:
    """A warning line when `model` on this input has far more parameters (> 2x) than on the input
    its recipe was designed for (cnn4 on whole 30-s, 128-band clips: 21.5 M instead of 3.5 M),
    with the crop that gives it that input; None when the sizes are alike or no recipe says."""
    from trainers.options import resolve, to_config
    from trainers.recipes import RECIPES

    recipe = next((r for r in RECIPES.values() if r.options["model"] == model), None)
    if recipe is None or len(inputs.arrays) != 1:
        return None
    designed = to_config("", "", resolve(recipe=recipe.name, flags={"init_from": ["a", "b"]}
                                         if recipe.options.get("freeze_encoders") else {})).input
    base = preset(recipe.preset)
    if len(designed.arrays) != 1 or designed.kind not in base.arrays:
        return None
    feature = base.feature(designed.kind)
    expected = count_parameters(build_model(model, designed.features(base), designed.sample_shape(base), classes))
    if parameters <= 2 * expected:
        return None
    shape = str(inputs.sample_shape(spec)).replace(" ", "")
    flag = {"spectrogram": "--crop-frames", "waveform": "--crop-samples"}.get(feature.layout)
    length = designed.sample_shape(base)[-1]
    fix = f"train on windows of that size with {flag} {length}" if flag else "give it the input it was designed for"
    return (f"warning: {model} on {inputs.kind} {shape} has {parameters:,} parameters, {parameters / expected:.1f}x "
            f"the {expected:,} it has on the input it was designed for ({designed.kind} "
            f"{str(designed.sample_shape(base)).replace(' ', '')}, recipe {recipe.name}): {fix}")
