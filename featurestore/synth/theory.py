"""Scales and chords as semitone offsets, so a style's harmony is data, not code."""

from __future__ import annotations

from collections.abc import Sequence

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "phrygian_dominant": (0, 1, 4, 5, 7, 8, 10),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "hirajoshi": (0, 2, 3, 7, 8),
    "blues": (0, 3, 5, 6, 7, 10),
}

DOM7 = (0, 4, 7, 10)
MIN7 = (0, 3, 7, 10)
MAJ7 = (0, 4, 7, 11)


def degree(scale: Sequence[int], step: int) -> int:
    """Semitone offset of any scale step, wrapping into higher or lower octaves."""
    octave, idx = divmod(step, len(scale))
    return 12 * octave + scale[idx]


def stacked(scale: Sequence[int], root_step: int, notes: int = 3) -> tuple[int, ...]:
    """Chord built in thirds from a scale degree: triads (3) or seventh chords (4)."""
    return tuple(degree(scale, root_step + 2 * i) for i in range(notes))
