"""The styles: one arranger per genre, turning random choices into mono parts.

Each arranger draws its musical decisions (progression, pattern, voicing, notes) from
`ctx.rng` and its sample-level noise from `ctx.noise`, and returns `Part`s at nominal
levels; `render` then varies the mix, adds reverb, noise and sets the loudness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from featurestore.synth import dsp
from featurestore.synth import instruments as ins
from featurestore.synth.theory import DOM7, MAJ7, MIN7, SCALES, degree, stacked


@dataclass(frozen=True)
class Part:
    name: str
    audio: np.ndarray  # mono float32, clip length
    level_db: float = 0.0
    reverb: float = 0.2  # send level
    pan: float = 0.5  # how far left/right it may be placed (0 = centre)


@dataclass(frozen=True)
class Context:
    """Everything an arranger needs: timing, key and the two random streams."""

    sr: int
    n: int
    tempo: float  # beats per minute
    tonic: int  # transposition in semitones, applied to the style's base pitches
    start: float  # seconds into the arrangement where the clip begins
    humanise: float  # standard deviation of timing jitter, seconds
    rng: np.random.Generator  # musical decisions
    noise: np.random.Generator  # sample-level noise (drum bursts, plucks)

    @property
    def beat(self) -> float:
        return 60.0 / self.tempo

    @property
    def n_bars(self) -> int:
        return int(np.ceil((self.start + self.n / self.sr) / (4 * self.beat))) + 1

    def timeline(self) -> dsp.Timeline:
        return dsp.Timeline(self.n, self.sr)

    def at(self, bar: int, step: float, steps: int = 16, swing: float = 0.5) -> float:
        """Clip time of `step` (of `steps` per 4/4 bar); offbeat 8ths land at `swing` of the beat."""
        step_len = 4 * self.beat / steps
        t = bar * 4 * self.beat + step * step_len - self.start
        pair = steps // 4  # steps per beat; its second half is the offbeat that swings
        if swing != 0.5 and pair % 2 == 0 and step % pair == pair // 2:
            t += (swing - 0.5) * self.beat
        return t + self.humanise * float(self.rng.standard_normal())

    def velocity(self, spread: float = 0.2) -> float:
        return float(1.0 - spread * self.rng.random())


def _hits(
    ctx: Context,
    tl: dsp.Timeline,
    sounds: Sequence[np.ndarray],
    steps: Sequence[float],
    *,
    gain: float = 1.0,
    grid: int = 16,
    swing: float = 0.5,
    prob: float = 1.0,
) -> None:
    for bar in range(ctx.n_bars):
        for step in steps:
            if prob >= 1.0 or ctx.rng.random() < prob:
                sound = sounds[int(ctx.rng.integers(len(sounds)))]
                tl.add(ctx.at(bar, step, grid, swing), sound, gain * ctx.velocity())


def _variants(make: Callable[[], np.ndarray], k: int = 3) -> list[np.ndarray]:
    """A few takes of a noisy drum hit, so repeated hits are not bit-identical."""
    return [make() for _ in range(k)]


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _pluck(ctx: Context, note: float, seconds: float, *, bright: float, sustain: float) -> np.ndarray:
    return dsp.pluck(float(dsp.midi_hz(note)), seconds, ctx.sr, ctx.noise, bright=bright, sustain=sustain)


def rock(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    root = 40 + ctx.tonic  # B1..A#2: where power chords sit on a (drop-tuned) guitar
    prog = _pick(rng, [(0, 10, 5, 0), (0, 8, 3, 10), (0, 5, 7, 5), (0, 3, 5, 3), (0, 7, 10, 5)])
    drums, gtr, bass = ctx.timeline(), ctx.timeline(), ctx.timeline()
    _hits(ctx, drums, [ins.kick(sr)], _pick(rng, [(0, 8), (0, 6, 8), (0, 8, 10), (0, 7, 8)]))
    _hits(ctx, drums, _variants(lambda: ins.snare(sr, ctx.noise)), (4, 12), gain=0.8)
    _hits(ctx, drums, _variants(lambda: ins.hat(sr, ctx.noise)), range(0, 16, 2), gain=0.35)
    crash = ins.hat(sr, ctx.noise, open_=True)
    palm = rng.random() < 0.6
    eighth = ctx.beat / 2
    for bar in range(ctx.n_bars):
        chord = root + prog[bar % len(prog)]
        if bar % 4 == 0:
            drums.add(ctx.at(bar, 0), crash, 0.5)
        hits = range(0, 16, 2) if palm else (0, 6, 8, 14)
        for step in hits:
            length = eighth * 0.9 if palm else eighth * (3 if step in (0, 8) else 1)
            gtr.add(ctx.at(bar, step), ins.power_chord(chord, length, sr, palm=palm), ctx.velocity(0.1))
        for step in range(0, 16, 2):
            bass.add(ctx.at(bar, step), ins.saw_bass(chord - 12, eighth * 0.95, sr, cutoff=700.0), ctx.velocity(0.1))
    drive = float(rng.uniform(4.0, 10.0))
    amp = dsp.highpass(dsp.lowpass(np.tanh(drive * gtr.buf), float(rng.uniform(3500, 5000)), sr), 90.0, sr)
    return [
        Part("drums", drums.buf, 0.0, 0.15, 0.1),
        Part("guitar", amp, -6.0, 0.2, 0.6),
        Part("bass", bass.buf, -9.0, 0.0, 0.1),
    ]


def electronic(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    root = 45 + ctx.tonic
    scale = SCALES[_pick(rng, ["minor", "dorian", "minor"])]
    prog = _pick(rng, [(0, 5, 2, 6), (0, 6, 5, 6), (0, 3, 5, 4), (0, 0, 5, 6)])
    drums, bass, synth = ctx.timeline(), ctx.timeline(), ctx.timeline()
    _hits(ctx, drums, [ins.kick(sr, low=48.0, seconds=0.3)], (0, 4, 8, 12))
    _hits(ctx, drums, _variants(lambda: ins.clap(sr, ctx.noise)), (4, 12), gain=0.6)
    _hits(ctx, drums, _variants(lambda: ins.hat(sr, ctx.noise, open_=True)), (2, 6, 10, 14), gain=0.4)
    _hits(
        ctx, drums, _variants(lambda: ins.hat(sr, ctx.noise)), range(16), gain=0.15, prob=float(rng.uniform(0.2, 0.9))
    )
    step_len = ctx.beat / 4
    bass_steps = _pick(rng, [(2, 6, 10, 14), (2, 3, 6, 7, 10, 11, 14, 15), (1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15)])
    arp = rng.random() < 0.5
    stab_steps = _pick(rng, [(0, 3, 6, 10), (2, 6, 10, 14), (0, 6, 12)])
    cutoff = float(rng.uniform(1500, 6000))
    for bar in range(ctx.n_bars):
        chord = stacked(scale, prog[bar % len(prog)])
        for step in bass_steps:
            bass.add(
                ctx.at(bar, step),
                ins.saw_bass(root - 12 + chord[0], step_len * 0.9, sr, cutoff=float(rng.uniform(300, 900))),
            )
        if arp:
            for step in range(16):
                note = root + 12 + chord[step % 3] + 12 * (step % 6 >= 3)
                synth.add(ctx.at(bar, step), ins.lead(note, step_len * 0.8, sr, cutoff=cutoff), 0.6)
        else:
            for step in stab_steps:
                for iv in chord:
                    synth.add(ctx.at(bar, step), ins.lead(root + 12 + iv, step_len * 1.8, sr, cutoff=cutoff), 0.4)
    return [
        Part("drums", drums.buf, 0.0, 0.05, 0.1),
        Part("bass", bass.buf, -6.0, 0.0, 0.1),
        Part("synth", synth.buf, -8.0, 0.3, 0.7),
    ]


def classical(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    minor = rng.random() < 0.4
    scale = SCALES["harmonic_minor" if minor else "major"]
    prog = _pick(rng, [(0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 1, 4), (0, 4, 5, 4)])
    root = 48 + ctx.tonic
    strings, melody = ctx.timeline(), ctx.timeline()
    bar_len = 4 * ctx.beat
    attack = float(rng.uniform(0.25, 0.7))
    for bar in range(ctx.n_bars):
        step = prog[bar % len(prog)]
        chord = stacked(scale, step)
        voices = [root - 12 + chord[0]] + [root + 12 + iv for iv in chord] + [root + 24 + chord[0]]
        for note in voices:
            strings.add(
                ctx.at(bar, 0), ins.pad_voice(note, bar_len * 1.05, sr, attack=attack, release=0.3, vibrato=0.003), 0.25
            )
    if rng.random() < 0.7:  # a slow, stepwise violin line over the chords
        pos = int(rng.integers(7, 11))
        for bar in range(ctx.n_bars):
            for beat in _pick(rng, [(0, 2), (0, 1, 2, 3), (0, 3)]):
                pos = int(np.clip(pos + rng.integers(-2, 3), 4, 14))
                length = ctx.beat * (2 if beat in (0, 2) else 1)
                melody.add(
                    ctx.at(bar, 4 * beat),
                    ins.lead(root + 12 + degree(scale, pos), length, sr, cutoff=3000.0, vibrato=0.006),
                    ctx.velocity(0.15),
                )
    cutoff = float(rng.uniform(2200, 3500))
    return [
        Part("strings", dsp.highpass(dsp.lowpass(strings.buf, cutoff, sr), 60.0, sr), 0.0, 0.6, 0.5),
        Part("violin", melody.buf, -5.0, 0.5, 0.5),
    ]


def jazz_blues(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    swing = float(rng.uniform(0.62, 0.7))
    root = 45 + ctx.tonic
    if rng.random() < 0.7:  # 12-bar blues in dominant sevenths
        form = [
            (0, DOM7),
            (5, DOM7),
            (0, DOM7),
            (0, DOM7),
            (5, DOM7),
            (5, DOM7),
            (0, DOM7),
            (0, DOM7),
            (7, DOM7),
            (5, DOM7),
            (0, DOM7),
            (7, DOM7),
        ]
    else:  # ii-V-I-VI turnaround
        form = [(2, MIN7), (7, DOM7), (0, MAJ7), (9, DOM7)]
    offset = int(rng.integers(len(form)))
    drums, bass, keys, horn = ctx.timeline(), ctx.timeline(), ctx.timeline(), ctx.timeline()
    _hits(ctx, drums, _variants(lambda: ins.ride(sr, ctx.noise)), (0, 4, 6, 8, 12, 14), grid=16, swing=swing, gain=0.45)
    _hits(ctx, drums, _variants(lambda: ins.hat(sr, ctx.noise)), (4, 12), gain=0.3)
    _hits(ctx, drums, [ins.kick(sr, seconds=0.25)], (0, 4, 8, 12), gain=0.15)
    _hits(
        ctx,
        drums,
        _variants(lambda: 0.5 * ins.snare(sr, ctx.noise)),
        (6, 10, 14),
        grid=16,
        swing=swing,
        gain=0.3,
        prob=0.25,
    )
    comp = _pick(rng, [(0, 6), (6, 14), (0, 10), (2, 8, 14)])
    blues = SCALES["blues"]
    play_horn = rng.random() < 0.6
    for bar in range(ctx.n_bars):
        chord_root, quality = form[(bar + offset) % len(form)]
        next_root = form[(bar + offset + 1) % len(form)][0]
        low = root - 12 + chord_root
        line = [
            low,
            low + _pick(rng, [quality[1], 2, quality[2]]),
            low + _pick(rng, [quality[2], quality[3], 5]),
            root - 12 + next_root + _pick(rng, [-1, 1]),
        ]
        for beat, note in enumerate(line):
            bass.add(
                ctx.at(bar, 4 * beat), _pluck(ctx, note, ctx.beat * 1.1, bright=0.2, sustain=0.8), ctx.velocity(0.15)
            )
        for step in comp:
            for iv in quality[1:] + (14,):  # shell voicing plus the ninth
                keys.add(
                    ctx.at(bar, step, swing=swing),
                    ins.epiano(root + 12 + chord_root + iv - 12 * (iv > 9), ctx.beat * 1.2, sr),
                    0.3,
                )
        if play_horn:
            for step in range(0, 16, 2):
                if rng.random() < 0.55:
                    note = root + 12 + degree(blues, int(rng.integers(0, 8)))
                    horn.add(
                        ctx.at(bar, step, swing=swing),
                        ins.lead(note, ctx.beat * 0.55, sr, cutoff=1800.0, vibrato=0.004),
                        ctx.velocity(0.3),
                    )
    return [
        Part("drums", drums.buf, -2.0, 0.2, 0.3),
        Part("bass", bass.buf, -2.0, 0.05, 0.2),
        Part("piano", keys.buf, -6.0, 0.3, 0.6),
        Part("horn", horn.buf, -9.0, 0.35, 0.6),
    ]


def folk_country(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    scale = SCALES["major"]
    prog = _pick(rng, [(0, 3, 4, 0), (0, 4, 5, 3), (0, 0, 3, 4), (0, 3, 0, 4)])
    root = 43 + ctx.tonic
    guitar, top, perc, bass = ctx.timeline(), ctx.timeline(), ctx.timeline(), ctx.timeline()
    bright = float(rng.uniform(0.45, 0.75))
    picking = _pick(rng, [(0, 3, 1, 2, 0, 3, 1, 2), (0, 2, 1, 3, 0, 2, 1, 3), (0, 1, 2, 3, 0, 3, 2, 1)])
    banjo = rng.random() < 0.5
    for bar in range(ctx.n_bars):
        chord = stacked(scale, prog[bar % len(prog)])
        voicing = (chord[0], chord[2], 12 + chord[1], 12 + chord[2])
        for i, string in enumerate(picking):
            note = root + voicing[string] + (7 if i == 4 and string == 0 else 0)  # alternating bass
            guitar.add(
                ctx.at(bar, 2 * i), _pluck(ctx, note, ctx.beat * 2.0, bright=bright, sustain=1.6), ctx.velocity(0.2)
            )
        for beat in (0, 2):
            bass.add(
                ctx.at(bar, 4 * beat),
                _pluck(ctx, root - 12 + chord[0] + 7 * (beat == 2), ctx.beat * 1.5, bright=0.15, sustain=0.9),
                0.8,
            )
        if banjo:  # forward rolls in the top octave
            for step in range(0, 16, 2):
                note = root + 24 + chord[(step // 2) % 3]
                top.add(
                    ctx.at(bar, step + 1), _pluck(ctx, note, ctx.beat, bright=0.9, sustain=0.5), 0.35 * ctx.velocity()
                )
        else:  # a fiddle melody from the major pentatonic
            for beat in range(4):
                note = root + 24 + degree(SCALES["major_pentatonic"], int(rng.integers(0, 6)))
                top.add(
                    ctx.at(bar, 4 * beat),
                    ins.lead(note, ctx.beat * 0.95, sr, cutoff=3500.0, vibrato=0.005),
                    0.3 * ctx.velocity(),
                )
    if rng.random() < 0.6:
        brush = _variants(lambda: dsp.lowpass(ins.snare(ctx.sr, ctx.noise, seconds=0.3), 4000.0, sr))
        _hits(ctx, perc, brush, (4, 12), gain=0.35)
    if rng.random() < 0.5:
        _hits(ctx, perc, _variants(lambda: ins.shaker(sr, ctx.noise)), range(0, 16, 2), gain=0.2)
    return [
        Part("guitar", guitar.buf, 0.0, 0.25, 0.4),
        Part("top", top.buf, -4.0, 0.3, 0.7),
        Part("bass", bass.buf, -4.0, 0.05, 0.2),
        Part("percussion", perc.buf, -6.0, 0.2, 0.3),
    ]


def hiphop(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    swing = float(rng.uniform(0.5, 0.6))
    root = 36 + ctx.tonic
    scale = SCALES["minor"]
    kicks = _pick(rng, [(0, 7, 10), (0, 3, 10), (0, 8, 11), (0, 10, 11)])
    drums, sub, loop, vinyl = ctx.timeline(), ctx.timeline(), ctx.timeline(), ctx.timeline()
    _hits(ctx, drums, [ins.boom(sr)], kicks, swing=swing)
    snare = _pick(rng, [lambda: ins.snare(sr, ctx.noise, tone=170.0, seconds=0.25), lambda: ins.clap(sr, ctx.noise)])
    _hits(ctx, drums, _variants(snare), (4, 12), gain=0.9)
    _hits(ctx, drums, _variants(lambda: ins.hat(sr, ctx.noise)), range(0, 16, 2), gain=0.25, swing=swing)
    _hits(ctx, drums, _variants(lambda: ins.hat(sr, ctx.noise)), (13, 15), gain=0.15, swing=swing, prob=0.3)
    prog = _pick(rng, [(0, 5), (0, 3), (0, 6, 5, 4), (0, 0, 5, 5)])
    voice = _pick(rng, [ins.epiano, ins.bell])
    hits = _pick(rng, [(0,), (0, 10), (0, 6)])
    bar_len = 4 * ctx.beat
    for bar in range(ctx.n_bars):
        chord = stacked(scale, prog[bar % len(prog)], 4)
        for i, step in enumerate(kicks):
            end = kicks[i + 1] if i + 1 < len(kicks) else 16
            sub.add(ctx.at(bar, step), ins.sub_bass(root + chord[0], (end - step) * bar_len / 16, sr), 0.9)
        for step in hits:
            for iv in chord:
                loop.add(ctx.at(bar, step), voice(root + 24 + iv, ctx.beat * 1.5, sr), 0.25)
    crackle = np.zeros(ctx.n, dtype=np.float32)
    pops = ctx.noise.integers(0, ctx.n, size=int(ctx.n / sr * rng.uniform(5, 30)))
    crackle[pops] = ctx.noise.uniform(-1, 1, pops.size)
    vinyl.buf += dsp.bandpass(crackle + 0.02 * ctx.noise.standard_normal(ctx.n, dtype=np.float32), 800.0, 6000.0, sr)
    lofi = float(rng.uniform(1200, 2800))
    return [
        Part("drums", drums.buf, 0.0, 0.05, 0.1),
        Part("sub", sub.buf, -3.0, 0.0, 0.0),
        Part("loop", dsp.lowpass(loop.buf, lofi, sr), -7.0, 0.2, 0.5),
        Part("vinyl", vinyl.buf, -22.0, 0.0, 0.3),
    ]


def ambient(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    scale = SCALES[_pick(rng, ["lydian", "major_pentatonic", "dorian"])]
    root = 48 + ctx.tonic
    pads, bells = ctx.timeline(), ctx.timeline()
    chord_len = 4 * ctx.beat * float(rng.integers(2, 4))
    t = -ctx.start
    while t < ctx.n / sr:
        chord = stacked(scale, int(rng.integers(0, 7)), 4)
        for iv in chord:
            pads.add(
                t, ins.soft_pad(root + iv, chord_len * 1.6, sr, attack=chord_len * 0.6, release=chord_len * 0.6), 0.3
            )
        t += chord_len
    for _ in range(int(rng.integers(1, 5))):
        note = root + 24 + degree(SCALES["major_pentatonic"], int(rng.integers(0, 6)))
        bells.add(
            float(rng.uniform(0, ctx.n / sr)),
            ins.bell(note, float(rng.uniform(2.0, 4.0)), sr),
            float(rng.uniform(0.2, 0.5)),
        )
    # a noise bed whose colour drifts between a low rumble and a band of air
    noise = ctx.noise.standard_normal(ctx.n, dtype=np.float32)
    lfo = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(ctx.n) / sr / float(rng.uniform(6, 14)) + rng.uniform(0, 6.28))
    centre = float(rng.uniform(700, 2000))
    bed = dsp.lowpass(noise, 400.0, sr) * (1 - lfo) + dsp.bandpass(noise, centre, centre * 1.6, sr) * lfo
    return [
        Part("pads", pads.buf, 0.0, 0.7, 0.6),
        Part("bells", bells.buf, -8.0, 0.8, 0.8),
        Part("bed", bed.astype(np.float32), float(rng.uniform(-12, -6)), 0.5, 0.3),
    ]


def world(ctx: Context) -> list[Part]:
    sr, rng = ctx.sr, ctx.rng
    scale = SCALES[_pick(rng, ["phrygian_dominant", "dorian", "hirajoshi", "minor_pentatonic", "major_pentatonic"])]
    root = 48 + ctx.tonic
    drums, melody = ctx.timeline(), ctx.timeline()
    low = float(rng.uniform(110, 170))
    high = float(rng.uniform(300, 460))
    rhythm = _pick(
        rng, [((0, 6, 10), (3, 8, 12, 14)), ((0, 3, 6, 10), (2, 8, 12, 14)), ((0, 8, 11), (3, 4, 6, 12, 14, 15))]
    )
    _hits(ctx, drums, _variants(lambda: ins.hand_drum(sr, ctx.noise, pitch=low, slap=0.15)), rhythm[0])
    _hits(ctx, drums, _variants(lambda: ins.hand_drum(sr, ctx.noise, pitch=high, slap=0.5)), rhythm[1], gain=0.6)
    if rng.random() < 0.5:
        _hits(ctx, drums, _variants(lambda: ins.shaker(sr, ctx.noise)), range(16), gain=0.12, prob=0.7)
    sitar = rng.random() < 0.55
    pos = int(rng.integers(0, len(scale)))
    for bar in range(ctx.n_bars):
        for step in range(0, 16, 2):
            if rng.random() < 0.35:
                continue
            pos = int(np.clip(pos + rng.integers(-2, 3), -2, 2 * len(scale)))
            note = root + 12 + degree(scale, pos)
            if sitar:
                melody.add(
                    ctx.at(bar, step), _pluck(ctx, note, ctx.beat * 1.5, bright=0.95, sustain=1.0), ctx.velocity()
                )
            else:
                melody.add(ctx.at(bar, step), ins.flute(note, ctx.beat * 0.9, sr, ctx.noise), 0.6 * ctx.velocity())
    return [
        Part("drums", drums.buf, -1.0, 0.15, 0.4),
        Part("drone", ins.drone(root - 12, ctx.n, sr), -16.0, 0.3, 0.2),
        Part("melody", melody.buf, -3.0, 0.3, 0.5),
    ]


@dataclass(frozen=True)
class Style:
    arrange: Callable[[Context], list[Part]]
    tempo: tuple[float, float]  # bpm range
    humanise: float  # timing jitter, seconds
    room: tuple[float, float]  # reverb time range, seconds


STYLE_SPECS: dict[str, Style] = {
    "ambient": Style(ambient, (50, 70), 0.0, (2.5, 4.0)),
    "classical": Style(classical, (60, 90), 0.01, (1.5, 2.5)),
    "electronic": Style(electronic, (120, 135), 0.0, (0.4, 0.9)),
    "folk_country": Style(folk_country, (85, 120), 0.008, (0.6, 1.2)),
    "hiphop": Style(hiphop, (85, 95), 0.004, (0.3, 0.7)),
    "jazz_blues": Style(jazz_blues, (100, 160), 0.008, (0.8, 1.5)),
    "rock": Style(rock, (100, 140), 0.005, (0.6, 1.2)),
    "world": Style(world, (90, 120), 0.01, (0.8, 1.6)),
}
