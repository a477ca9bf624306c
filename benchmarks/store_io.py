"""How often a resumed build reads and writes the store's metadata, counted by strace.

    python -m benchmarks.store_io [--clips 64] [--shard-size 8]

Builds a store of synthetic clips with `featurestore build` (2 local workers), deletes the
commit record of one shard (a build interrupted there), then re-runs the same command under
`strace -f` and counts, per process (the driver, and the Dask worker processes together):
opens of the root `zarr.json` for reading, renames onto it (every write of it is atomic),
listings of `commits/` and listings of each array's shard objects (`ARRAY/c`). Needs strace
(Debian: `apt-get install strace`); uses only the command line, so it measures any version.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CORPUS = """
import sys
from pathlib import Path
import pandas as pd, soundfile as sf
import manifests
from featurestore.synth import STYLES, render_clip
root, n = Path(sys.argv[1]), int(sys.argv[2])
rows = []
for i in range(n):
    style = STYLES[i % len(STYLES)]
    path = f"{style}/{i:04d}.wav"
    (root / "audio" / style).mkdir(parents=True, exist_ok=True)
    sf.write(root / "audio" / path, render_clip(style, i, 5.0, 16000), 16000)
    rows.append({"clip_id": str(i), "path": path, "labels": [style], "split": ("train", "valid", "test")[i % 3],
                 "group": str(i)})
meta = manifests.ManifestMeta(dataset="store-io", labels=list(STYLES))
manifests.save(manifests.Manifest(pd.DataFrame(rows), meta), root / "m.parquet")
"""
CLONE = re.compile(r"^(clone3?|vfork|fork)\((.*)\)\s+=\s+(\d+)")


def count(trace: str, store: Path) -> collections.Counter:
    root = f'"{store}/zarr.json"'
    found: collections.Counter = collections.Counter()
    for line in trace.splitlines():
        if "openat(" in line and root in line and "O_RDONLY" in line:
            found["root zarr.json read"] += 1
        elif "rename" in line and line.split(") = ")[0].rstrip().endswith(root):
            found["root zarr.json written"] += 1
        elif "openat(" in line and "O_DIRECTORY" in line:
            if f'"{store}/commits"' in line:
                found["commits/ listed"] += 1
            elif match := re.search(re.escape(str(store)) + r'/(\w+)/c"', line):
                found[f"{match.group(1)}/c listed"] += 1
    return found


def measure(clips: int, shard_size: int, work: Path) -> tuple[collections.Counter, collections.Counter, int]:
    subprocess.run([sys.executable, "-c", CORPUS, str(work), str(clips)], check=True)
    store = work / "s.zarr"
    build = [sys.executable, "-m", "featurestore", "build", str(work / "m.parquet"), "--audio-root", str(work / "audio"),
             "--out", str(store), "--preset", "mtat-seed", "--duration", "5", "--workers", "2", "--shard-size",
             str(shard_size), "--quiet"]
    subprocess.run(build, check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(store / "commits" / "shard-00003")
    prefix = work / "trace"
    subprocess.run(["strace", "-ff", "-e", "trace=openat,rename,renameat2,getdents64,clone,clone3,vfork,fork",
                    "-o", str(prefix), *build], check=True, stdout=subprocess.DEVNULL)
    files = sorted(prefix.parent.glob(prefix.name + ".*"), key=lambda f: int(f.suffix[1:]))
    owner = {int(files[0].suffix[1:]): int(files[0].suffix[1:])}  # thread -> the process it belongs to
    traces = {int(f.suffix[1:]): f.read_text(errors="replace") for f in files}
    for tid, text in traces.items():
        for line in text.splitlines():
            if match := CLONE.match(line):
                child = int(match.group(3))
                owner[child] = owner.get(tid, tid) if "CLONE_THREAD" in match.group(2) else child
    driver_pid = int(files[0].suffix[1:])
    driver, workers = collections.Counter(), collections.Counter()
    for tid, text in traces.items():
        (driver if owner.get(tid, tid) == driver_pid else workers).update(count(text, store))
    return driver, workers, -(-clips // shard_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store_io", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=8)
    args = parser.parse_args(argv)
    if shutil.which("strace") is None:
        print("python -m benchmarks.store_io: needs strace (apt-get install strace)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="store-io-") as work:
        driver, workers, shards = measure(args.clips, args.shard_size, Path(work))
    print(f"a resumed build of {args.clips} clips in {shards} shards, one shard left to build, 2 workers:")
    for who, found in (("driver", driver), ("workers", workers)):
        for what in sorted(found):
            print(f"  {who:8s} {what:28s} {found[what]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
