"""Footprint: what a clip costs on disk, from first principles, per lossless option, and lossy-bounded.

1. The source report's "10 GB → 1 GB" for MTAT, step by step (128 mels / hop 512 / 30 s /
   float32 → 80 mels / hop 1024 / 20 s / float16): bytes per clip computed from the shape,
   measured as one `.npy` per clip (the report's layout) and as a compressed Zarr array.
2. Every lossless option on real-sounding audio (mtat-seed log-mel, float16): the store's
   `--codec` choices, more zstd levels and Blosc variants, and chunk/shard shapes — bytes per
   clip, write MB/s, sequential and random read MB/s (warm page cache).
3. The store's bounded-error codec `quantized:STEP` (integers round(x / STEP) with CF
   scale_factor, then Blosc-zstd): max and RMS error against the float32 features next to float16's own,
   bytes per clip and MTAT projected — swept over steps in the same harness, then checked
   end to end in a store written by `featurestore.build`.
4. What the codec does to a trained model: the same model and seed trained and tested on the
   float16 store and on the quantized store of the same demo corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurestore.codecs import DEFAULT

from benchmarks.context import Context
from benchmarks.results import Section, Table, Target, fmt, save_figure
from benchmarks.zarr_options import Layout, Timing, measure

MTAT_CLIPS = 25_863
TARGET_GB = 0.7  # quantized mtat-seed log-mel for all of MTAT
FLOAT16_MAX_ERROR = 1 / 32  # float16 spacing is 1/16 for |x| in [64, 128): worst rounding 1/32 dB over -100..+40
TARGET_METRIC_DELTA = 0.002


@dataclass(frozen=True)
class Sizes:
    principle_clips: int  # clips behind the measured columns of the first-principles table
    clips: int  # clips of mtat-seed log-mel for the codec and layout comparisons
    rounds: int  # round-robin repetitions over all options (medians reported)
    random_reads: int
    chunk: int  # layout for the codec comparison
    shard: int
    layout_chunks: tuple[int, ...]
    layout_shards: tuple[int, ...]
    steps: tuple[float, ...]  # quantization steps swept, dB
    model_clips: int  # demo corpus for the trained-model comparison (distinct renders, 8 styles)
    epochs: int


FULL = Sizes(principle_clips=32, clips=512, rounds=3, random_reads=256, chunk=4, shard=256,
             layout_chunks=(1, 4, 16, 64), layout_shards=(64, 256), steps=(1 / 64, 1 / 32, 1 / 16, 1 / 8),
             model_clips=512, epochs=10)
QUICK = Sizes(principle_clips=2, clips=8, rounds=1, random_reads=4, chunk=2, shard=4,
              layout_chunks=(1, 4), layout_shards=(4,), steps=(1 / 16,), model_clips=24, epochs=1)
STEP = 1 / 16  # the bounded-error setting: max error 1/32 dB, float16's own worst over -100..+40 dB
MODEL = "cnn4"  # the MTAT report's model, on log-mel ...
CROP_FRAMES, EVAL_CROPS = 64, 4  # ... trained on random 4-s crops (5× cheaper on a CPU), tested on 4 crops per clip
CODECS = (DEFAULT, f"quantized:{STEP:g}")  # the store default, and the bounded-error codec


def store_codec(name: str, array: str = "logmel"):
    """The encoding the store gives the mtat-seed preset's `array` under `--codec name`."""
    from featurestore import codecs
    from featurestore.presets import preset

    return lambda: codecs.parse(name).for_array(preset("mtat-seed").feature(array))


def extra_codec(*compressors):
    from featurestore.codecs import ArrayCodec

    return lambda: ArrayCodec("float16", "float16", tuple(c() for c in compressors))


# ---- 1. first principles -------------------------------------------------------------------

STEPS = (
    ("source report: 128 mels, hop 512, 30 s, float32", dict(n_mels=128, hop=512, duration=30.0), "float32"),
    ("→ 80 mels", dict(n_mels=80, hop=512, duration=30.0), "float32"),
    ("→ hop 1024", dict(n_mels=80, hop=1024, duration=30.0), "float32"),
    ("→ first 20 s", dict(n_mels=80, hop=1024, duration=20.0), "float32"),
    ("→ float16 (= mtat-seed)", dict(n_mels=80, hop=1024, duration=20.0), "float16"),
)


def principles(ctx: Context, paths: list[str]) -> tuple[Table, dict[str, float]]:
    """The report's table; returns it and the measured .npy GB for MTAT per step (for the plot)."""
    from featurestore.codecs import ArrayCodec
    from featurestore.presets import preset

    from benchmarks.features import float32_features
    from benchmarks.zarr_options import stored_bytes, write_array

    rows, gb = [], {}
    for k, (label, changes, dtype) in enumerate(STEPS):
        spec = preset("mtat-seed").select(["logmel"], **changes)
        bands, frames = spec.feature("logmel").clip_shape()
        logmel = float32_features(paths, spec)["logmel"].astype(dtype)
        computed = bands * frames * np.dtype(dtype).itemsize
        npy_dir = ctx.scratch(f"principle-{k}-npy")
        for i, clip in enumerate(logmel):
            np.save(npy_dir / f"{i}.npy", clip)
        npy = stored_bytes(npy_dir) / len(logmel)
        z = ctx.work / f"principle-{k}.zarr"
        lossless = store_codec(DEFAULT)()
        encoding = lambda: ArrayCodec(dtype, dtype, lossless.compressors)  # noqa: E731
        write_array(z, logmel, Layout(DEFAULT, encoding, chunk=1, shard=len(logmel)))
        zarr_bytes = stored_bytes(z) / len(logmel)
        gb[label] = npy * MTAT_CLIPS / 1e9
        rows.append([
            label, f"{bands} × {frames}", dtype, f"{computed:,}", f"{npy:,.0f}", f"{zarr_bytes:,.0f}",
            f"{computed * MTAT_CLIPS / 1e9:.2f} GB", f"{npy * MTAT_CLIPS / 1e9:.2f} GB",
            f"{zarr_bytes * MTAT_CLIPS / 1e9:.2f} GB",
        ])
        ctx.log(f"  {label}: {computed:,} B/clip computed, {npy:,.0f} .npy, {zarr_bytes:,.0f} Zarr")
    table = Table(
        f"Log-mel bytes per clip, step by step from the source report's settings to mtat-seed "
        f"(16 kHz audio; measured on {len(paths)} generated MTAT-like clips; scaled to MTAT's {MTAT_CLIPS:,} clips)",
        ["setting", "shape", "dtype", "computed B/clip", "measured .npy B/clip", f"measured Zarr {DEFAULT} B/clip",
         "MTAT computed", "MTAT .npy", "MTAT Zarr"],
        rows,
    )
    return table, gb


# ---- 2. lossless options -------------------------------------------------------------------

def codec_layouts(sizes: Sizes) -> list[Layout]:
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    from featurestore.codecs import CLEVEL

    options = [
        ("`none` (store option)", store_codec("none")),
        (f"`{DEFAULT}` (store default: Blosc level 2 = zstd 3, byte shuffle)", store_codec(DEFAULT)),
        (f"`blosc-zstd` (store option: Blosc level {CLEVEL} = zstd {2 * CLEVEL - 1}, byte shuffle)",
         store_codec("blosc-zstd")),
        ("Blosc level 5 (zstd 9), byte shuffle", extra_codec(lambda: BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"))),
        ("`blosc-zstd-bitshuffle` (store option)", store_codec("blosc-zstd-bitshuffle")),
        ("`zstd` (store option: zstd 3)", store_codec("zstd")),
        ("zstd 1", extra_codec(lambda: ZstdCodec(level=1))),
        ("zstd 9", extra_codec(lambda: ZstdCodec(level=9))),
        ("Blosc level 5 (zstd 9), no shuffle", extra_codec(lambda: BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle"))),
        ("Blosc-lz4 5, byte shuffle", extra_codec(lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"))),
        ("gzip 5", extra_codec(lambda: GzipCodec(level=5))),
    ]
    return [Layout(label, enc, sizes.chunk, sizes.shard) for label, enc in options]


def shape_layouts(sizes: Sizes) -> list[Layout]:
    return [
        Layout(f"chunk {c} / shard {s}", store_codec(DEFAULT), c, s)
        for s in sizes.layout_shards for c in sizes.layout_chunks if c <= s
    ]


def round_robin(ctx: Context, data: np.ndarray, layouts: list[Layout], sizes: Sizes) -> dict[str, list[Timing]]:
    """Every layout once per round; a lossless layout must read back bit-identical."""
    clips = np.random.default_rng(0).integers(0, len(data), sizes.random_reads)
    timings: dict[str, list[Timing]] = {layout.label: [] for layout in layouts}
    for r in range(sizes.rounds):
        for layout in layouts:
            timing, back = measure(ctx.work / "option.zarr", data, layout, clips)
            if not np.array_equal(back, data):
                raise AssertionError(f"{layout.label}: the array read back differs from the one written")
            timings[layout.label].append(timing)
        ctx.log(f"  round {r + 1}/{sizes.rounds} over {len(layouts)} layouts")
    return timings


OPTION_COLUMNS = ["option", "B/clip", "ratio vs raw float16", "MTAT", "write MB/s", "sequential read MB/s",
                  "random read MB/s (1 clip per call)", "ms per random clip"]


def option_rows(data: np.ndarray, timings: dict[str, list[Timing]], random_reads: int) -> tuple[list[list[str]], dict[str, float]]:
    raw = data.nbytes
    clip = raw / len(data)
    rows, gb = [], {}
    for label, ts in timings.items():
        per_clip = ts[0].stored_bytes / len(data)
        write_s, seq_s, rand_s = (float(np.median(v)) for v in zip(*[(t.write_s, t.seq_read_s, t.random_read_s) for t in ts]))
        gb[label] = per_clip * MTAT_CLIPS / 1e9
        rows.append([
            label, f"{per_clip:,.0f}", f"{clip / per_clip:.3f}", f"{gb[label]:.3f} GB",
            fmt(raw / 1e6 / write_s), fmt(raw / 1e6 / seq_s), fmt(random_reads * clip / 1e6 / rand_s),
            f"{rand_s / random_reads * 1e3:.2f}",
        ])
    return rows, gb


# ---- 3. bounded error ----------------------------------------------------------------------

@dataclass(frozen=True)
class Error:
    """How far an encoding's read-back log-mel lies from the float32 features, and what it costs."""

    max: float
    rms: float
    bytes_per_clip: float

    def row(self, label: str) -> list[str]:
        return [label, f"{self.max:.5f}", f"{self.rms:.5f}", f"{self.bytes_per_clip:,.0f}",
                f"{self.bytes_per_clip * MTAT_CLIPS / 1e9:.3f} GB"]


def error(back: np.ndarray, reference: np.ndarray, bytes_per_clip: float) -> Error:
    err = back.astype(np.float64) - reference.astype(np.float64)
    return Error(float(np.abs(err).max()), float(np.sqrt(np.mean(err**2))), bytes_per_clip)


ERROR_COLUMNS = ["encoding of log-mel", "max abs error dB", "RMS error dB", "B/clip", "MTAT"]


def entropy_bits(values: np.ndarray) -> float:
    """Order-0 Shannon entropy, bits per value: what an ideal coder of independent symbols needs."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def quantized_label(step: float) -> str:
    return f"`quantized:{step:g}` (step 1/{round(1 / step)} dB)"


def quantized_sweep(ctx: Context, logmel32: np.ndarray, sizes: Sizes) -> dict[str, Error]:
    """float16 (the store default) and each `quantized:STEP`, against the float32 features."""
    import zarr
    from zarr.storage import LocalStore

    from featurestore.codecs import decode

    from benchmarks.zarr_options import stored_bytes, write_array

    results = {}
    options = [(f"float16, `{DEFAULT}` (store default)", store_codec(DEFAULT), logmel32.astype(np.float16))]
    options += [(quantized_label(s), store_codec(f"quantized:{s:g}"), logmel32) for s in sizes.steps]
    for label, encoding, data in options:
        path = ctx.work / "quantized.zarr"
        write_array(path, data, Layout(label, encoding, sizes.chunk, sizes.shard))
        stored = zarr.open_array(LocalStore(path, read_only=True), path="x")
        back = decode(stored[:], dict(stored.attrs))  # a quantized array: integers and CF scale_factor
        results[label] = error(back, logmel32, stored_bytes(path) / len(data))
        ctx.log(f"  {label}: {results[label].bytes_per_clip:,.0f} B/clip, max error {results[label].max:.5f} dB")
    return results


# ---- 4. end to end: stores built by featurestore.build, and a model trained on each ------------------

def trained_on_each(ctx: Context, sizes: Sizes) -> tuple[dict[str, Error], dict[str, dict[str, float]]]:
    """Build the demo corpus twice (float16, quantized), check the stored error, train and test."""
    from featurestore.builder import build
    from featurestore.presets import preset
    from featurestore.store import open_store
    from trainers.config import TrainConfig
    from trainers.inputs import InputConfig
    from trainers.loop import train

    from benchmarks.corpus import corpus
    from benchmarks.features import float32_features
    from benchmarks.zarr_options import stored_bytes

    demo = corpus(ctx, "mtat", sizes.model_clips)
    errors, metrics, reference = {}, {}, None
    for codec in CODECS:
        spec = preset("mtat-seed").select(["logmel"], codec=codec)
        url = ctx.work / f"demo-{codec.replace(':', '-')}.zarr"
        ctx.log(f"  featurestore build {sizes.model_clips} clips with --codec {codec}")
        build(demo.manifest, audio_root=demo.root, out=url, spec=spec, scheduler=ctx.cluster(2).scheduler.address,
              overwrite=True)
        store = open_store(url)
        if reference is None:  # float32 features of the clips in store order
            reference = float32_features([str(demo.root / p) for p in store.manifest["path"]], spec)["logmel"]
        errors[f"store written by `featurestore build --codec {codec}` ({store.n_clips} clips)"] = error(
            store.array("logmel")[:], reference, stored_bytes(url / "logmel") / store.n_clips)
    for codec in CODECS:
        url = ctx.work / f"demo-{codec.replace(':', '-')}.zarr"
        ctx.log(f"  train {MODEL} for {sizes.epochs} epochs on the {codec} store")
        config = TrainConfig(store=str(url), model=MODEL, out=str(ctx.work / f"run-{codec.replace(':', '-')}"),
                             input=InputConfig("logmel", crop_frames=CROP_FRAMES, eval_crops=EVAL_CROPS),
                             epochs=sizes.epochs, device="cpu", seed=0, num_workers=2)
        metrics[codec] = train(config, progress=False)["test"]
    return errors, metrics


def run(ctx: Context) -> Section:
    from featurestore.presets import preset

    from benchmarks.corpus import corpus
    from benchmarks.features import float32_features

    sizes = QUICK if ctx.quick else FULL
    files = corpus(ctx, "mtat", sizes.clips).paths

    ctx.log("first principles: the source report's table")
    table1, principle_gb = principles(ctx, files[: sizes.principle_clips])

    ctx.log(f"mtat-seed log-mel of {len(files)} clips (float32, from the project's decode and extractor)")
    logmel32 = float32_features(files, preset("mtat-seed").select(["logmel"]))["logmel"]
    logmel16 = logmel32.astype(np.float16)

    ctx.log("lossless codecs")
    codec_rows, codec_gb = option_rows(logmel16, round_robin(ctx, logmel16, codec_layouts(sizes), sizes), sizes.random_reads)
    ctx.log("chunk / shard shapes")
    shape_rows, _ = option_rows(logmel16, round_robin(ctx, logmel16, shape_layouts(sizes), sizes), sizes.random_reads)
    ctx.log("bounded-error codec: step sweep")
    sweep = quantized_sweep(ctx, logmel32, sizes)
    ctx.log(f"bounded-error codec end to end, and {MODEL} trained on the float16 and the quantized store")
    stored, metrics = trained_on_each(ctx, sizes)
    f16, quant = (metrics[c] for c in CODECS)
    metric_keys = ("accuracy", "roc_auc_macro", "macro_f1", "loss")
    deltas = {k: quant[k] - f16[k] for k in metric_keys}
    chosen = sweep[quantized_label(STEP)]
    quant_gb, quant_max = chosen.bytes_per_clip * MTAT_CLIPS / 1e9, chosen.max
    steps = np.round(logmel32 / STEP).astype(np.int32)
    bits, delta_bits = entropy_bits(steps), entropy_bits(np.diff(steps, axis=-1))
    values = logmel32[0].size

    tables = [
        table1,
        Table(f"Lossless codecs on mtat-seed log-mel (80 × 313 float16, {len(files)} clips, chunks of "
              f"{sizes.chunk} clips in shards of {sizes.shard}; median of {sizes.rounds} rounds)",
              OPTION_COLUMNS, codec_rows),
        Table(f"Chunk and shard shapes (clips per chunk / per shard) under the store default `{DEFAULT}` "
              f"(median of {sizes.rounds} rounds)", OPTION_COLUMNS, shape_rows),
        Table(f"Bounded error: log-mel encodings against the float32 features of the same clips "
              f"(float16's own worst rounding over -100…+40 dB is 1/32 = {FLOAT16_MAX_ERROR:.5f} dB); "
              f"the last two rows are whole stores written by `featurestore.build`",
              ERROR_COLUMNS, [e.row(label) for label, e in (sweep | stored).items()]),
        Table(f"The same trained model ({MODEL} on random {CROP_FRAMES}-frame crops, seed 0, {sizes.epochs} epochs, "
              f"CPU; tested on {EVAL_CROPS} crops per clip) on the float16 and the "
              f"`quantized:{STEP:g}` store of a {sizes.model_clips}-clip demo corpus (8 synth styles, "
              f"single-label; test split)",
              ["store codec", "test accuracy", "test macro ROC-AUC (one-vs-rest)", "test macro F1", "test loss"],
              [[f"`{c}`", *(f"{m[k]:.4f}" for k in metric_keys)] for c, m in metrics.items()]
              + [["difference", *(f"{deltas[k]:+.4f}" for k in metric_keys)]]),
    ]
    plot = plot_footprint(ctx, principle_gb, codec_gb, {k: e.bytes_per_clip * MTAT_CLIPS / 1e9 for k, e in sweep.items()})
    return Section(
        name="footprint",
        title="Footprint",
        summary=__doc__.split("\n\n", 1)[1].strip(),
        tables=tables,
        targets=[
            Target(f"`quantized:{STEP:g}` log-mel for MTAT (mtat-seed)", f"≤ {TARGET_GB} GB", f"{quant_gb:.3f} GB",
                   quant_gb <= TARGET_GB),
            Target(f"`quantized:{STEP:g}` max error vs float32", f"≤ float16's {FLOAT16_MAX_ERROR:.5f} dB",
                   f"{quant_max:.5f} dB", quant_max <= FLOAT16_MAX_ERROR),
            Target("test accuracy change, quantized vs float16 store", f"≤ {TARGET_METRIC_DELTA}",
                   f"{deltas['accuracy']:+.4f}", abs(deltas["accuracy"]) <= TARGET_METRIC_DELTA),
            Target("test macro ROC-AUC change, quantized vs float16 store", f"≤ {TARGET_METRIC_DELTA}",
                   f"{deltas['roc_auc_macro']:+.4f}", abs(deltas["roc_auc_macro"]) <= TARGET_METRIC_DELTA),
        ],
        notes=[
            f"One test clip is 1/{f16['n_clips']} of the accuracy here, so an accuracy change below "
            f"{TARGET_METRIC_DELTA} means no test prediction changed; ROC-AUC and the test loss move continuously. "
            f"Where both models score a ROC-AUC near 1 the demo task is nearly solved, and the comparison shows "
            f"that the codec does no harm there rather than how small a harm it could resolve.",
            f"What limits `quantized:{STEP:g}`: its integers carry {bits:.2f} bits each (order-0 entropy; "
            f"{delta_bits:.2f} bits as differences along time), so an ideal coder of independent symbols needs "
            f"{bits * values / 8:,.0f} B/clip ({delta_bits * values / 8:,.0f} on differences) = "
            f"{bits * values / 8 * MTAT_CLIPS / 1e9:.3f} GB ({delta_bits * values / 8 * MTAT_CLIPS / 1e9:.3f} GB) for "
            f"MTAT; Blosc-zstd's byte shuffle stores {chosen.bytes_per_clip:,.0f} B/clip.",
            "Reads are from a warm page cache: they measure Zarr and decompression, not the disk.",
        ],
        plots=[plot],
    )


def plot_footprint(ctx: Context, *groups: dict[str, float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ("#888888", "#33aa77", "#3377cc")
    labels, values, colour = [], [], []
    for group, c in zip(groups, colours):
        for label, gb in group.items():
            labels.append(label.replace("`", ""))
            values.append(gb)
            colour.append(c)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color=colour)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(TARGET_GB, color="#cc3333", lw=1, ls="--")
    ax.text(TARGET_GB, len(labels) - 0.5, f" {TARGET_GB} GB target", color="#cc3333", fontsize=8)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
    ax.set_xlabel(f"log-mel footprint for MTAT ({MTAT_CLIPS:,} clips), GB, log scale")
    ax.set_title("grey: .npy per clip, report's steps · green: lossless Zarr · blue: bounded-error", fontsize=9)
    return save_figure(fig, ctx.out / "footprint.png")
