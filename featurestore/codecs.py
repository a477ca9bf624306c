"""Storage codecs by name: how each array of the store is encoded inside its shards.

The name lives in the spec (`FeatureSpec.codec`, part of its hash), so a store records how it
was encoded and a reader needs nothing but zarr to decode it. Which arrays a quantized codec
applies to is each feature kind's to say (`Feature.codec_step`, `Feature.max_magnitude`). Choices, with the compression
measured on mtat-seed log-mel (80 x 313, float16) of 20-s clips from `featurestore.synth`:

- `blosc-zstd:2` (default): Blosc level 2 with zstd and byte shuffle, lossless, ~1.25x. Blosc
  runs zstd at level 2 x LEVEL - 1 (levels 1-7), so this is zstd level 3.
- `blosc-zstd[:LEVEL]`: any Blosc level from 1 to 9; without one, level 3 (zstd 5), the default
  of stores built before levels were named, which keep it. Level 3 costs 1.5-1.65x as much time
  to compress as level 2 (mtat-seed 0.98 against 0.64 ms per clip, gtzan 2.17 against 1.31, fma
  16.2 against 10.6, one thread) for 2.1-2.8 % fewer bytes.
- `zstd`: plain zstd level 3, lossless, ~1.17x.
- `blosc-zstd-bitshuffle`: Blosc level 3 with bit shuffle, lossless, ~1.2x.
- `none`: raw bytes, 1x (for footprint baselines).
- `quantized:STEP[:MFCC_STEP]`: bounded error. Every log-mel array (and every MFCC array when
  MFCC_STEP is given: the kinds whose `codec_step` is 0 and 1) is stored as integers
  `round(x / STEP)` under `blosc-zstd` (Blosc level 3), so the absolute error is at most STEP/2
  everywhere. STEP = 1/16 dB gives 1/32 dB, float16's own worst rounding error over
  -100..+40 dB, at ~1.7x instead of ~1.3x. Quantized arrays read back as float32 (a multiple of
  STEP is not always a float16 number).

Every array uses Zarr v3 core codecs only (bytes, Blosc, zstd), so any Zarr v3 reader decodes
it. A quantized array is a plain integer array whose CF attributes `scale_factor` (= STEP) and
`add_offset` (= 0) say how to turn it back into dB, which xarray applies by itself; this
package's reader (`decode`) does the same. A power-of-two STEP (the default 1/16) makes every
value exact in float32, so every reader gets the same numbers bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurestore.errors import UserError

DEFAULT = "blosc-zstd:2"
# Blosc's level when a name gives none (`blosc-zstd`, `blosc-zstd-bitshuffle`, the quantized
# codecs): what stores built before levels were named hold, so it never changes. Blosc level 5
# (zstd 9) made log-mel only 3 % and waveform crops 6 % smaller than this level, and tripled the
# encoding cost (2.9 against 1.1 ms per mtat-seed clip).
CLEVEL = 3
LOSSLESS = ("blosc-zstd", "zstd", "blosc-zstd-bitshuffle", "none")
BLOSC_LEVELS = range(1, 10)
MAX_STEPS = 4  # steps a quantized codec name may give


@dataclass(frozen=True)
class ArrayCodec:
    """Encoding of one array: the dtype readers get back, the dtype stored, the compressors."""

    dtype: str
    stored: str
    compressors: tuple[Any, ...]
    step: float | None = None  # quantization step (absolute error bound = step / 2)
    max_abs: float = math.inf  # largest magnitude the encoding can hold

    def encode(self, values: np.ndarray) -> np.ndarray:
        """What is stored for `values` (already checked to lie within `max_abs`)."""
        if self.step is None:
            return values.astype(self.stored, copy=False)
        # the rounding numcodecs' FixedScaleOffset did for stores of format 2: same integers
        return np.rint(np.asarray(values, dtype=np.float32) * np.float32(1 / self.step)).astype(self.stored)

    def attributes(self) -> dict[str, Any]:
        """CF packing attributes of a quantized array: unpacked = packed * scale_factor + add_offset.
        `_FillValue` is the one integer the encoding never writes (|value| <= max_abs), so CF readers
        mask nothing; it is there because CF tools refuse packed floats without one."""
        if self.step is None:
            return {}
        return {"scale_factor": self.step, "add_offset": 0.0, "_FillValue": int(np.iinfo(self.stored).min)}


def decode(stored: np.ndarray, attributes: dict[str, Any]) -> np.ndarray:
    """An array's values from what is stored, by its CF packing attributes (none: as stored)."""
    scale = attributes.get("scale_factor")
    if scale is None:
        return stored
    return (stored * np.float64(scale) + np.float64(attributes.get("add_offset", 0.0))).astype(np.float32)


@dataclass(frozen=True)
class Codec:
    """A parsed codec name."""

    name: str
    lossless: str  # the lossless compressor family used for every array
    steps: tuple[float, ...] = ()  # quantization steps, by the kinds' `codec_step` position
    clevel: int = CLEVEL  # Blosc's level, for the Blosc families

    def step(self, feature: Any) -> float | None:
        """The quantization step of a feature's array (None: stored as computed)."""
        position = getattr(feature, "codec_step", None)
        return self.steps[position] if position is not None and position < len(self.steps) else None

    def for_array(self, feature: Any) -> ArrayCodec:
        """Encoding of a feature's array (a `featurestore.features.Feature`, or anything with its
        `dtype`, like the status and length arrays)."""
        dtype, step = feature.dtype, self.step(feature)
        if step is None:
            return ArrayCodec(dtype, dtype, self._compressors(None))
        # round(x / step) as an integer: int16 when its range leaves ample headroom for any finite
        # feature value, else int32 (never wrap around silently).
        itemsize = 2 if 32767 * step >= feature.max_magnitude else 4
        limit = (2 ** (8 * itemsize - 1) - 1) * step
        return ArrayCodec("float32", f"int{8 * itemsize}", self._compressors(itemsize), step=step, max_abs=limit)

    def _compressors(self, typesize: int | None) -> tuple[Any, ...]:
        """The lossless stage; Blosc must shuffle by the size of the elements it is given."""
        from zarr.codecs import BloscCodec, ZstdCodec

        if self.lossless == "none":
            return ()
        if self.lossless == "zstd":
            return (ZstdCodec(level=3),)
        shuffle = "bitshuffle" if self.lossless == "blosc-zstd-bitshuffle" else "shuffle"
        extra = {} if typesize is None else {"typesize": typesize}
        return (BloscCodec(cname="zstd", clevel=self.clevel, shuffle=shuffle, **extra),)

    def identity(self, feature: Any) -> dict[str, Any]:
        """What an array's stored values depend on in its encoding (part of its settings hash)."""
        encoding = self.for_array(feature)
        return {"codec": self.name, "stored_dtype": encoding.stored, "step": encoding.step}


def parse(name: str) -> Codec:
    """Validate a codec name (`--codec`); a UserError says which names exist."""
    if name in LOSSLESS:
        return Codec(name, name)
    if name.startswith("blosc-zstd:"):
        level = name.partition(":")[2]
        if not (level.isdigit() and int(level) in BLOSC_LEVELS):
            raise UserError(f"bad codec {name!r}: write blosc-zstd:LEVEL with a Blosc level from 1 to 9, "
                            f"e.g. {DEFAULT}")
        return Codec(name, "blosc-zstd", clevel=int(level))
    if name.startswith("quantized:"):
        parts = name.split(":")[1:]
        try:
            steps = [float(p) for p in parts]
        except ValueError:
            steps = []
        if not steps or len(steps) > MAX_STEPS or not all(0 < s < 100 and math.isfinite(s) for s in steps):
            raise UserError(
                f"bad codec {name!r}: write quantized:STEP or quantized:STEP:MFCC_STEP with steps in dB, "
                "e.g. quantized:0.0625"
            )
        return Codec(name, "blosc-zstd", tuple(steps))
    raise UserError(f"unknown codec {name!r}: choose from {DEFAULT}, blosc-zstd[:LEVEL], "
                    f"{', '.join(LOSSLESS[1:])} or quantized:STEP")
