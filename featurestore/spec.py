"""The feature spec: how clips are decoded, how arrays are encoded, and the named arrays.

A spec is three things: the `Decoding` every array shares (sample rate, clip length, limits),
the codec name, and named arrays, each an `ArraySpec`: a feature kind and that kind's own
settings (a frozen dataclass the `Feature` class declares, so a plug-in declares its own). One
store can therefore hold `logmel` (80 bands) beside `logmel128` (128 bands, hop 512); arrays that
agree on what they compute share the work (an MFCC array reuses the log-mel of a log-mel array
with the same mel settings). A spec reads and writes TOML:

    codec = "blosc-zstd:2"
    [decoding]
    sample_rate = 16000
    duration = 20.0
    [arrays.logmel]
    kind = "logmel"
    n_mels = 80

Missing settings take their defaults. A store records its spec and each array's settings hash,
so features computed with other settings can never be mixed silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from featurestore.audio.settings import Decoding
from featurestore.codecs import DEFAULT as DEFAULT_CODEC
from featurestore.errors import UserError
from featurestore.features import Feature, available, feature_class
from featurestore.settings import FORBID, check, dump, parse

# Names the store uses for its own nodes: an array may not take them.
RESERVED = frozenset({"status", "length", "clip", "split", "labels", "commits", "manifest", "clips"})
ARRAY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
MAX_CLIP_BYTES = 2**28  # one clip's values in one array


@dataclass(frozen=True)
class ArraySpec:
    """One array: a feature kind and that kind's settings (None: its defaults)."""

    kind: str
    settings: Any = None

    def __post_init__(self) -> None:
        cls = feature_class(self.kind)
        if self.settings is None:
            object.__setattr__(self, "settings", cls.Settings())
        elif type(self.settings) is not cls.Settings:
            raise UserError(f"the settings of a {self.kind} array must be a {cls.Settings.__name__}, "
                            f"not a {type(self.settings).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dump(self.settings)}


def _default_arrays() -> dict[str, ArraySpec]:
    return {"logmel": ArraySpec("logmel"), "mfcc": ArraySpec("mfcc"), "waveform": ArraySpec("waveform")}


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute from each clip, and how. Arrays keep their order (the store's order)."""

    decoding: Decoding = field(default_factory=Decoding)
    arrays: Mapping[str, ArraySpec] = field(default_factory=_default_arrays)
    codec: str = DEFAULT_CODEC

    def __post_init__(self) -> None:
        from featurestore import codecs

        object.__setattr__(self, "arrays", dict(self.arrays))
        check(self.decoding, "decoding settings")
        if not self.arrays:
            raise UserError("a spec needs at least one array")
        codec = codecs.parse(self.codec)
        features = {}
        for name, array in self.arrays.items():
            if not isinstance(array, ArraySpec):
                raise UserError(f"array {name!r} must be an ArraySpec, not a {type(array).__name__}")
            _check_name(name)
            check(array.settings, f"array {name}")
            cls = feature_class(array.kind)
            try:
                cls.check(array.settings, self.decoding)
            except UserError as exc:
                raise UserError(f"array {name}: {exc}") from None
            feature = cls(name, array.settings, self.decoding)
            if feature.clip_bytes > MAX_CLIP_BYTES:
                raise UserError(f"array {name}: one clip's {feature.clip_shape()} values take {feature.clip_bytes:,} "
                                f"bytes, more than {MAX_CLIP_BYTES:,}: choose smaller settings")
            features[name] = feature
        dims = {d for f in features.values() for d in f.dims}
        clash = sorted(n for n in features if n in dims or n.endswith(("_mean", "_std")))
        if clash:
            raise UserError(f"array name {clash[0]!r} is a dimension name or ends like the store's statistics "
                            "(_mean, _std): choose another")
        unused = [i for i in range(len(codec.steps)) if not any(c.codec_step == i for c in available().values())]
        if unused:
            raise UserError(f"codec {self.codec!r} gives {len(codec.steps)} steps, but no feature kind takes step "
                            f"{unused[0] + 1}")
        object.__setattr__(self, "_features", features)

    def __hash__(self) -> int:
        return int(self.hash(), 16)

    # --- reading the spec ----------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def feature(self, name: str) -> Feature:
        """The feature of array `name`."""
        try:
            return self._features[name]  # type: ignore[attr-defined]
        except KeyError:
            raise UserError(f"the spec has no array {name!r} (it has {', '.join(self.arrays)})") from None

    @property
    def n_samples(self) -> int:
        return self.decoding.n_samples

    def hash(self) -> str:
        """Stable across processes and Python versions: SHA-256 of the canonical JSON."""
        return digest(self.to_dict())

    # --- changing it ---------------------------------------------------------------------------

    def replace(self, **changes: Any) -> FeatureSpec:
        """A copy with `changes`: decoding settings, `codec`, or settings of the arrays' kinds, each
        applied to every array that has it (`n_mels=128` sets the mel bands of the log-mel and the
        MFCC arrays). A setting no array has is refused."""
        return self._with(self.arrays, changes)

    def select(self, names: Iterable[str], **changes: Any) -> FeatureSpec:
        """A copy with the arrays `names`, in that order: this spec's arrays of those names, and for
        a name it lacks that is a feature kind, an array of that kind with its default settings;
        then `changes`, as `replace` applies them."""
        names = list(dict.fromkeys(names))
        return self._with({n: self.arrays[n] if n in self.arrays else _new_array(n, self) for n in names}, changes)

    def setting_names(self, names: Iterable[str] | None = None) -> set[str]:
        """What `replace` (or `select(names, ...)`) can change: the decoding settings, `codec`, and
        the settings of the arrays (or of the arrays `names` would select)."""
        kinds = [self.arrays[n].kind if n in self.arrays else n for n in (self.names if names is None else names)]
        return {f.name for f in dataclasses.fields(Decoding)} | {"codec"} | {
            f.name for kind in kinds if kind in available() for f in dataclasses.fields(feature_class(kind).Settings)}

    def _with(self, arrays: Mapping[str, ArraySpec], changes: dict[str, Any]) -> FeatureSpec:
        decoding_fields = {f.name for f in dataclasses.fields(Decoding)}
        decoding = {k: v for k, v in changes.items() if k in decoding_fields}
        codec = changes.get("codec", self.codec)
        rest = {k: v for k, v in changes.items() if k not in decoding_fields and k != "codec"}
        changed = {}
        used: set[str] = set()
        for name, array in arrays.items():
            own = {f.name for f in dataclasses.fields(array.settings)}
            mine = {k: v for k, v in rest.items() if k in own}
            used |= mine.keys()
            changed[name] = ArraySpec(array.kind, dataclasses.replace(array.settings, **mine)) if mine else array
        unused = sorted(rest.keys() - used)
        if unused:
            raise UserError(f"no array of this spec ({', '.join(arrays)}) has the setting {unused[0]!r}")
        return FeatureSpec(dataclasses.replace(self.decoding, **decoding), changed, codec)

    # --- documents -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"codec": self.codec, "decoding": dump(self.decoding),
                "arrays": {name: array.to_dict() for name, array in self.arrays.items()}}

    @classmethod
    def from_dict(cls, document: Any, where: str = "feature spec", error: type[UserError] = UserError) -> FeatureSpec:
        """A spec from its JSON or TOML form (`to_dict`); `error` naming `where` and the field otherwise.
        The flat form written before arrays had settings of their own (store format 3) is read too."""
        if isinstance(document, Mapping) and "features" in document:
            document = _from_flat(document, where, error)
        shape = parse(_SpecDocument, document, where, error)
        arrays = {}
        for name, entry in shape.arrays.items():
            kind = entry.get("kind")
            if not isinstance(kind, str):
                raise error(f"{where}: arrays.{name}.kind: a feature kind is required (e.g. kind = \"logmel\")")
            if kind not in available():
                raise error(f"{where}: arrays.{name}.kind: unknown feature kind {kind!r} (choose from "
                            f"{', '.join(available())}; a plug-in's kind needs its package installed)")
            settings = parse(feature_class(kind).Settings, {k: v for k, v in entry.items() if k != "kind"},
                             f"{where}: arrays.{name}", error)
            arrays[name] = ArraySpec(kind, settings)
        try:
            return cls(shape.decoding, arrays, shape.codec)
        except UserError as exc:
            raise error(f"{where}: {exc}") from None

    def to_toml(self) -> str:
        """The spec as TOML (None-valued settings, which mean a default such as the Nyquist
        frequency, are left out: TOML has no null)."""
        import tomli_w

        return tomli_w.dumps(_without_none(self.to_dict()))

    @classmethod
    def from_toml(cls, text: str, where: str = "feature spec") -> FeatureSpec:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{where}: not TOML ({exc})") from None
        return cls.from_dict(document, where)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureSpec:
        """A spec from a TOML file."""
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the spec file {os.fspath(path)}: {exc}") from None
        return cls.from_toml(text, os.fspath(path))


@dataclass(frozen=True)
class _SpecDocument:
    """A spec document's shape before each array's settings are checked by its kind."""

    __pydantic_config__ = FORBID
    arrays: dict[str, dict[str, Any]]
    decoding: Decoding = field(default_factory=Decoding)
    codec: str = DEFAULT_CODEC


def digest(value: Any) -> str:
    """16 hex digits of SHA-256 over canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not ARRAY_NAME.match(name):
        raise UserError(f"array name {name!r}: use lower-case letters, digits and '_' (up to 48, starting with a "
                        "letter)")
    if name in RESERVED:
        raise UserError(f"array name {name!r} is taken by the store's own nodes ({', '.join(sorted(RESERVED))}): "
                        "choose another")


def _new_array(name: str, spec: FeatureSpec) -> ArraySpec:
    if name not in available():
        raise UserError(f"{name!r} is neither an array of this spec ({', '.join(spec.arrays)}) nor a feature kind "
                        f"({', '.join(available())}; a plug-in's kind needs its package installed where this runs)")
    return ArraySpec(name)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


# The fields of the flat spec of store format 3: decoding, then every kind's settings side by side.
_FLAT_DECODING = ("sample_rate", "duration", "offset", "max_channels", "max_input_rate")


def _from_flat(flat: Mapping[str, Any], where: str, error: type[UserError]) -> dict[str, Any]:
    """The nested form of a flat spec of store format 3. Clips then failed as too short below one
    `n_fft` window, which `min_samples` now says; each feature kept the fields it declared."""
    flat = dict(flat)
    features = flat.pop("features")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise error(f"{where}: features: a list of feature names is required")
    decoding = {k: flat[k] for k in _FLAT_DECODING if k in flat}
    decoding["min_samples"] = flat.get("n_fft", Decoding.min_samples)
    arrays = {}
    for kind in features:
        if kind not in available():
            raise error(f"{where}: features: unknown feature kind {kind!r}")
        own = {f.name for f in dataclasses.fields(feature_class(kind).Settings)}
        arrays[kind] = {"kind": kind, **{k: v for k, v in flat.items() if k in own}}
    return {"codec": flat.get("codec", DEFAULT_CODEC), "decoding": decoding, "arrays": arrays}
