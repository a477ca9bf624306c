"""Conformance tests a feature plug-in subclasses, as zarr ships `StoreTests` for stores.

    from featurestore.testing import FeatureTests
    from my_package.chroma import Chroma, ChromaSettings

    class TestChroma(FeatureTests):
        feature_class = Chroma
        settings = ChromaSettings(n_chroma=24)   # optional: the kind's defaults otherwise

pytest then checks what the store relies on: the class is a valid kind; the settings pass their
own checks and round-trip through a spec's TOML and JSON; what `compute` returns has the declared
shape and is finite, for silence, noise, a tone and a full-scale square wave; it is deterministic
(the same input twice, and a fresh instance, give the same bits) and leaves its input alone;
arrays with other settings hash differently; and where the kind has a torch module (`module()`),
the module gives `compute`'s values on the CPU and, where there is one, on a CUDA device. A
kind that is not installed yet is registered for each test only. Needs pytest (a test extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from featurestore.features.base import Feature
from featurestore.features.registry import available, registered, validate
from featurestore.spec import ArraySpec, Decoding, FeatureSpec
from featurestore.store.commits import part_hashes


class FeatureTests:
    """Subclass as `TestYourKind` and set `feature_class`; optionally `settings`, `decoding`,
    `rtol` / `atol` (the agreement asked of a module on another device)."""

    feature_class: ClassVar[type[Feature]]
    settings: ClassVar[Any] = None  # None: the kind's defaults
    decoding: ClassVar[Decoding] = Decoding(sample_rate=16_000, duration=2.0)
    rtol: ClassVar[float] = 1e-3
    atol: ClassVar[float] = 1e-3
    array: ClassVar[str] = "tested"

    # --- what the tests use ----------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _kind_available(self) -> Iterator[None]:
        """A kind that is not installed (yet) is registered in this process for each test only."""
        if available().get(self.feature_class.kind) is self.feature_class:
            yield
            return
        with registered(self.feature_class):
            yield

    def spec(self) -> FeatureSpec:
        """A spec of one array of the kind."""
        return FeatureSpec(self.decoding, {self.array: ArraySpec(self.feature_class.kind, self.settings)})

    def feature(self) -> Feature:
        return self.spec().feature(self.array)

    def signals(self) -> dict[str, np.ndarray]:
        """Clips of `decoding.n_samples` float32 samples the feature must handle."""
        n, rate = self.decoding.n_samples, self.decoding.sample_rate
        t = np.arange(n) / rate
        noise = np.random.default_rng(0).normal(0, 0.1, n)
        return {name: np.ascontiguousarray(x, dtype=np.float32) for name, x in {
            "silence": np.zeros(n), "noise": noise, "tone": 0.5 * np.sin(2 * np.pi * 440.0 * t),
            "square": np.sign(np.sin(2 * np.pi * 110.0 * t)), "dc": np.full(n, 0.25)}.items()}

    # --- the tests ----------------------------------------------------------------------------------

    def test_is_a_valid_feature_kind(self):
        cls = self.feature_class
        validate(cls, cls.kind, cls.__module__)
        assert self.feature().clip_shape() == tuple(self.feature().clip_shape()), "clip_shape is a tuple"
        assert len(self.feature().clip_shape()) == len(cls.dims), "one size per declared dimension"

    def test_computed_values_have_the_declared_shape_and_are_finite(self):
        feature = self.feature()
        for name, samples in self.signals().items():
            values = np.asarray(feature.compute(samples, {}))
            assert values.shape == feature.clip_shape(), f"{name}: computed {values.shape}"
            assert np.isfinite(values).all(), f"{name}: non-finite values"
        for dim, names in feature.coordinates().items():
            assert dim in feature.dims and len(names) == feature.clip_shape()[feature.dims.index(dim)]
        if feature.normalised:
            assert feature.stats_size == feature.clip_shape()[feature.stats_axis - 1]

    def test_deterministic_and_leaves_its_input_alone(self):
        for name, samples in self.signals().items():
            before = samples.copy()
            first = np.asarray(self.feature().compute(samples, {}))
            again = np.asarray(self.feature().compute(samples, {}))
            assert first.tobytes() == again.tobytes(), f"{name}: two computations differ"
            assert samples.tobytes() == before.tobytes(), f"{name}: the input was modified"

    def test_settings_round_trip_through_the_spec(self):
        spec = self.spec()
        assert FeatureSpec.from_toml(spec.to_toml()) == spec
        assert FeatureSpec.from_dict(spec.to_dict()) == spec
        assert FeatureSpec.from_dict(spec.to_dict()).hash() == spec.hash()

    def test_unknown_settings_are_refused(self):
        from featurestore.errors import UserError

        document = self.spec().to_dict()
        document["arrays"][self.array]["no_such_setting"] = 1
        try:
            FeatureSpec.from_dict(document)
        except UserError as exc:
            assert "no_such_setting" in str(exc)
        else:
            raise AssertionError("a setting the kind does not have was accepted")

    def test_other_settings_hash_differently(self):
        spec = self.spec()
        settings = spec.arrays[self.array].settings
        for field in dataclasses.fields(settings):
            value = getattr(settings, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            for other in (value + 1, value * 2, value - 1):
                try:
                    changed = spec.replace(**{field.name: type(value)(other)})
                except Exception:  # noqa: BLE001 - a value the kind refuses is no counter-example
                    continue
                if changed.arrays[self.array].settings != settings:
                    assert part_hashes(changed)[self.array] != part_hashes(spec)[self.array], field.name
                    break

    def test_module_agrees_with_compute_on_every_device(self):
        import torch

        feature = self.feature()
        module = feature.module()
        if module is None:
            return  # the kind computes without torch: there is no device to agree on
        devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
        for name, samples in self.signals().items():
            expected = np.asarray(feature.compute(samples, {}), dtype=np.float32)
            for device in devices:
                with torch.inference_mode():
                    got = module.to(device)(torch.from_numpy(samples).to(device)).float().cpu().numpy()
                np.testing.assert_allclose(got, expected, rtol=self.rtol, atol=self.atol,
                                           err_msg=f"{name} on {device}")
