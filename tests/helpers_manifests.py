"""Builders of the manifest tests' inputs: real audio files, GTZAN trees, FMA metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from manifests.adapters.fma import COLUMNS as FMA_COLUMNS

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def write_tone(path: Path, seconds: float = 0.02, sr: int = 8000) -> Path:
    """A short sine in the format the file extension names (WAV, FLAC, OGG, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.1 * np.sin(2 * np.pi * 440 * t), sr)
    return path


def write_gtzan(root: Path, per_genre: int = 100) -> Path:
    """The standard tree root/genres/<genre>/<genre>.000NN.wav (tiny real WAVs, encoded once)."""
    wav = write_tone(root / "tone.wav", seconds=0.005).read_bytes()
    (root / "tone.wav").unlink()
    for genre in GTZAN_GENRES:
        (root / "genres" / genre).mkdir(parents=True)
        for i in range(per_genre):
            (root / "genres" / genre / f"{genre}.{i:05d}.wav").write_bytes(wav)
    return root


def fma_track(track_id: int, **fields: str) -> dict[str, str]:
    """One tracks.csv row (every one of the 52 columns, as text) with sensible defaults."""
    row = {column: "" for column in FMA_COLUMNS}
    row.update(
        {
            "track.title": f"Track {track_id}",
            "track.genres": "[]",
            "track.genres_all": "[]",
            "set.split": "training",
            "set.subset": "small",
            "artist.id": str(track_id // 10),
            "artist.name": f"Artist {track_id // 10}",
            "album.id": str(track_id // 5),
            "album.title": f"Album {track_id // 5}",
        }
    )
    row.update({key.replace("__", "."): value for key, value in fields.items()})
    return {"track_id": track_id, **row}


def write_fma_tracks(folder: Path, rows: list[dict[str, str]]) -> Path:
    """tracks.csv exactly as FMA ships it: pandas' dump of a frame with (group, field) columns.

    Header rows: the column group, the field, then the index name `track_id` alone.
    """
    frame = pd.DataFrame(rows).set_index("track_id")
    frame.columns = pd.MultiIndex.from_tuples([tuple(name.split(".", 1)) for name in frame.columns])
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "tracks.csv")
    return folder / "tracks.csv"
