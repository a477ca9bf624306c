"""The script a user writes instead of a feature store: `python -m benchmarks.pool_build MANIFEST
AUDIO_ROOT OUT --preset NAME`: a `multiprocessing.Pool(2)` of single-threaded processes mapping
librosa over the manifest's clips, one float16 `.npy` per clip and feature (`baselines.librosa_clip`),
timed from the command to exit by `benchmarks.cold`."""

from __future__ import annotations

import argparse
import multiprocessing
import os
from functools import partial

import pandas as pd

from benchmarks.baselines import Plain, librosa_clip, prepare
from featurestore.presets import preset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("audio_root")
    parser.add_argument("out")
    parser.add_argument("--preset", default="mtat-seed")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    paths = [os.path.join(args.audio_root, p) for p in pd.read_parquet(args.manifest, columns=["path"])["path"]]
    spec = Plain.of(preset(args.preset))  # the same features as the store's preset
    # the default start method (fork on Linux): the pool's processes start with this one's imports
    with multiprocessing.Pool(args.processes, initializer=prepare, initargs=(True,)) as pool:
        done = sum(pool.imap_unordered(partial(librosa_clip, spec=spec, out_dir=args.out), enumerate(paths),
                                       chunksize=8))
    assert done == len(paths)


if __name__ == "__main__":
    main()
