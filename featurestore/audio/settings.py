"""How every clip of a store is decoded: the settings its arrays share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from featurestore.errors import SettingsError
from featurestore.settings import FORBID, Field

MAX_SAMPLES = 2**28  # samples of one decoded clip (1 GiB of float32)


@dataclass(frozen=True)
class Decoding:
    """How every clip is decoded: mono at `sample_rate`, `duration` seconds from `offset` seconds
    into the file (truncated or zero-padded). Files with more than `max_channels` channels or
    sampled faster than `max_input_rate` fail unread (decode memory is channels x rate x seconds);
    a clip with fewer than `min_samples` samples of audio (or the whole clip, if shorter) fails as
    too short (one 2048-sample analysis window by default)."""

    __pydantic_config__ = FORBID
    sample_rate: Annotated[int, Field(ge=1000, le=384_000)] = 16_000
    duration: Annotated[float, Field(gt=0.0, le=86_400.0)] = 20.0
    offset: Annotated[float, Field(ge=0.0, le=86_400.0)] = 0.0
    max_channels: Annotated[int, Field(ge=1, le=1024)] = 16
    max_input_rate: Annotated[int, Field(ge=1000, le=10_000_000)] = 384_000
    min_samples: Annotated[int, Field(ge=1, le=2**20)] = 2048

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    def __post_init__(self) -> None:
        if self.n_samples > MAX_SAMPLES:
            raise SettingsError(f"clips of {self.duration:g} s at {self.sample_rate} Hz are {self.n_samples:,} samples, "
                            f"more than {MAX_SAMPLES:,}: shorten --duration")
