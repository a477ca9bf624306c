"""Faults of the machine are not faults of the file: a worker that cannot read audio the build's
own process reads never commits those clips as failed.

Real `dask worker` processes that cannot see the audio: one in its own mount namespace with an
empty tmpfs over the audio folder (a node whose mount is missing), one without the capabilities
that let root ignore file permissions (a node with another uid's view of the files). The build
runs as a real `featurestore build` process against them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import manifests
from featurestore.cli import main
from featurestore.store import FAILED, OK, open_store
from helpers_cluster import dask_cli_cluster
from helpers_store import assert_same_arrays, read_arrays

pytest_plugins = ["helpers_store"]
pytestmark = pytest.mark.reliability

SHARD = 8
SPEC_ARGS = ["--duration", "1", "--crop-samples", "4096", "--shard-size", str(SHARD), "--quiet"]
DROP_FILE_OVERRIDE = ("import ctypes, os, sys\n"
                      "libc = ctypes.CDLL(None, use_errno=True)\n"
                      "for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: permissions bind root too\n"
                      "    assert libc.prctl(24, cap, 0, 0, 0) == 0\n"
                      "os.execv(sys.argv[1], sys.argv[1:])\n")


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def without_file_override(folder: Path) -> list[str]:
    script = folder / "drop_file_override.py"
    script.write_text(DROP_FILE_OVERRIDE)
    return [sys.executable, str(script)]


def build(manifest: Path, audio: Path, out: Path, *extra: str, timeout: float = 300) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "featurestore", "build", str(manifest), "--audio-root", str(audio),
                           "--out", str(out), *SPEC_ARGS, *extra], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture()
def audio(store_corpus, tmp_path) -> Path:
    """A private copy of the corpus's audio, so that files can go missing or change mode."""
    copy = tmp_path / "audio"
    shutil.copytree(store_corpus.audio, copy)
    return copy


@pytest.mark.skipif(not _can_unshare(), reason="needs root and mount namespaces (unshare -m) to hide a mount")
def test_a_worker_that_cannot_see_the_audio_root_stops_the_build_before_the_store_is_touched(
        store_corpus, audio, tmp_path):
    """One healthy worker and one whose audio folder is an empty tmpfs: one line naming the blind
    worker and a file it cannot see, exit 2, no store."""
    blind = ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs none "{audio}" && exec "$0" "$@"']
    out = tmp_path / "store.zarr"
    with dask_cli_cluster(tmp_path, {"healthy": [], "blind": blind}) as running:
        address, names = running.address, running.names
        code, _, err = build(store_corpus.big_manifest, audio, out, "--scheduler", address)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"Dask worker {names['blind']} cannot read the audio this machine reads: " in err
    assert "file not found" in err and names["healthy"] not in err
    assert not out.exists(), "the store was touched"


def test_files_a_worker_cannot_read_are_read_by_another_and_never_committed_as_failed(
        store_corpus, audio, tmp_path):
    """A worker for which the files (all but the few the start-up check samples) are unreadable:
    its shards come back unread and are built by the healthy worker; with only that worker, every
    shard it cannot read fails naming it and a path, nothing of them is committed, and a re-run on
    a healthy cluster builds them."""
    from featurestore.builder.plan import sampled_paths

    paths = manifests.load(store_corpus.big_manifest).table["path"].tolist()
    sampled = set(sampled_paths(paths))
    hidden = sorted(set(paths) - sampled)
    for path in hidden:
        (audio / path).chmod(0)
    restricted = without_file_override(tmp_path)

    out = tmp_path / "store.zarr"
    with dask_cli_cluster(tmp_path / "both", {"healthy": [], "restricted": restricted}) as running:
        address, names = running.address, running.names
        code, stdout, err = build(store_corpus.big_manifest, audio, out, "--scheduler", address)
    assert code == 0, err
    assert re.search(rf"warning: Dask worker {re.escape(names['restricted'])} cannot read \S+ \(permission denied\), "
                     "which this machine reads; its shards go to other workers", err), err
    store = open_store(out)
    assert (store.status == OK).all(), "a clip the restricted worker could not read was committed as failed"
    assert store.build_state == "complete"

    alone = tmp_path / "alone.zarr"
    with dask_cli_cluster(tmp_path / "alone", {"restricted": restricted}) as running:
        address, names = running.address, running.names
        code, stdout, err = build(store_corpus.big_manifest, audio, alone, "--scheduler", address)
    assert code != 0 and "Traceback" not in err
    assert re.search(rf"Dask worker {re.escape(names['restricted'])} cannot read \S+ \(permission denied\), which "
                     "this machine reads: a fault of the worker's machine", stdout + err), stdout + err
    partial = open_store(alone)
    assert not (partial.status == FAILED).any(), "an unreadable file was committed as the file's failure"
    assert partial.n_pending > 0

    with dask_cli_cluster(tmp_path / "healthy", {"healthy": []}) as running:
        address, names = running.address, running.names
        code, stdout, err = build(store_corpus.big_manifest, audio, alone, "--scheduler", address)
    assert code == 0, err
    assert (open_store(alone).status == OK).all()


def test_a_file_not_found_when_it_was_built_is_retried_by_a_plain_rerun(store_corpus, audio, tmp_path, capsys):
    """A clip committed as "file not found" (by a build that could not read it either, or by an
    older build whose worker could not see it) is built again once the file is there: only its
    shard, and the store then equals one built undisturbed."""
    out, reference = tmp_path / "store.zarr", tmp_path / "reference.zarr"
    common = [str(store_corpus.big_manifest), "--audio-root", str(audio), *SPEC_ARGS, "--workers", "2"]
    path = manifests.load(store_corpus.big_manifest).table["path"].iat[13]  # in shard 1, and in shards 4 and 7
    (audio / path).rename(tmp_path / "away")
    assert main(["build", *common, "--out", str(out)]) == 0
    store = open_store(out)
    failed = np.flatnonzero(store.status == FAILED)
    assert len(failed) == 3 and (store.manifest["path"].iloc[failed] == path).all()
    assert all(store.manifest["error"].iat[i] == "file not found" for i in failed)

    (tmp_path / "away").rename(audio / path)
    capsys.readouterr()
    assert main(["build", *common, "--out", str(out)]) == 0
    assert "(3 built now, 6 already committed)" in capsys.readouterr().out
    assert (open_store(out).status == OK).all()
    assert main(["build", *common, "--out", str(reference)]) == 0
    assert_same_arrays(read_arrays(out), read_arrays(reference))
