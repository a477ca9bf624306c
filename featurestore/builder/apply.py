"""Make the store what the plan needs before any task runs: create it, or grow it.

A new store gets its root document first (it makes the folder a feature store, which a later
build may resume or `--overwrite`), then its nodes, then the manifest copy. An existing one has
its root document rewritten once, saying "building" (which drops the consolidated metadata, so
no reader trusts a snapshot of nodes about to change), then gains the arrays it lacks and grows
its clip axis for appended rows. A store of format 3 has its commit records rewritten in
today's form first (`featurestore.store.legacy`).
"""

from __future__ import annotations

import uuid
from typing import Any

from featurestore import environment
from featurestore.builder.events import Events, StoreCreated
from featurestore.builder.finish import errors
from featurestore.builder.plan import Plan
from featurestore.errors import UserError
from featurestore.locations import list_names, remove_files, remove_tree
from featurestore.store.attrs import FORMAT_VERSION, ArrayRecord, RootAttributes, now, write_root
from featurestore.store.commits import CommitRecord, part_hashes, write_record
from featurestore.store.state import NotAStore, StoreState, has_store, read_state
from featurestore.store.writer import ManifestCopy, create_missing, remove_other_copies, resize


def existing(url: str, overwrite: bool) -> StoreState | None:
    """The store at `url` as it stands (None: nothing there, or `overwrite` replaces it). A folder
    holding anything but a feature store is refused, and nothing in it is touched."""
    names = list_names(url)
    try:
        state = None if overwrite else read_state(url, growing=True)
        foreign = bool(names) and (not has_store(url) if overwrite else state is None)
    except NotAStore:
        foreign = True
    if foreign:
        raise UserError(f"{url} holds files that are not a feature store ({', '.join(names[:3])}"
                        f"{', ...' if len(names) > 3 else ''}): choose a new or empty --out (--overwrite replaces "
                        "only a feature store, and nothing here was deleted)")
    return state


def apply(url: str, plan: Plan, manifest: Any, audio_root: str, records: dict[int, CommitRecord],
          valid: dict[int, frozenset[str]], events: Events) -> RootAttributes:
    """Write what the plan needs; returns the root attributes written (state "building")."""
    spec, layout, state = plan.spec, plan.layout, plan.state
    hashes = part_hashes(spec)
    common = {"format_version": FORMAT_VERSION, "spec": spec, "manifest_hash": manifest.content_hash(),
              "dataset": manifest.meta.dataset, "labels": tuple(manifest.meta.labels), "n_clips": layout.n_clips,
              "chunk_clips": layout.chunk_clips, "shard_clips": layout.shard_clips, "build_state": "building",
              "versions": dict(environment.versions())}
    if state is None:
        if list_names(url):
            remove_tree(url)  # a feature store (checked by `existing`) that --overwrite replaces, or never committed
        copy = ManifestCopy(manifest, [None] * layout.n_clips)
        attrs = RootAttributes(**common, store_id=uuid.uuid4().hex, audio_root=audio_root,
                               arrays={n: ArrayRecord(hashes[n], now()) for n in spec.names}, manifest_copy=copy.name)
        write_root(url, attrs)
        create_missing(url, spec, layout, {})
        events.emit(StoreCreated(url))
        copy.write(url)
        return attrs

    old = state.attrs
    remove_files(url, list(state.temporaries))
    if state.upgraded_from is not None:  # records first: a store read as format 3 tolerates converted ones
        for record in records.values():
            write_record(url, record)
    copy_name = old.manifest_copy
    if common["manifest_hash"] != old.manifest_hash or copy_name is None:
        copy = ManifestCopy(manifest, errors(plan, records, valid))
        copy.write(url)
        copy_name = copy.name
    unchanged_rows = plan.grown_from is None and not plan.relabelled
    attrs = RootAttributes(
        **common, store_id=old.store_id, audio_root=audio_root if plan.jobs else old.audio_root,
        arrays={n: ArrayRecord(hashes[n], old.arrays[n].added if n in old.arrays else now()) for n in spec.names},
        manifest_copy=copy_name, stats_values=old.stats_values if unchanged_rows else {})
    write_root(url, attrs)
    if copy_name != old.manifest_copy:
        remove_other_copies(url, copy_name)
    resize(state.arrays, url, spec, layout.n_clips)
    create_missing(url, spec, layout, state.arrays)
    return attrs


def upgrade(url: str) -> tuple[int | None, int]:
    """Rewrite a store of an older format in today's, under its writer lock: its commit records,
    then its root attributes (with consolidated metadata when it is complete). Returns (the format
    it had, None if already today's; records rewritten). No array is touched."""
    from featurestore.builder.lock import writer_lock
    from featurestore.locations import location
    from featurestore.store.writer import consolidated

    url = location(url)
    with writer_lock(url):
        state = read_state(url)
        if state is None:
            raise UserError(f"{url}: not a feature store (no Zarr group there)")
        if state.upgraded_from is None:
            return None, 0
        for record in state.records.values():
            write_record(url, record)
        attrs = state.attrs
        write_root(url, attrs, consolidated(url, attrs) if attrs.build_state == "complete" else None)
        return state.upgraded_from, len(state.records)
