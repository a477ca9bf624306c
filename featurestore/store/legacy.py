"""Stores of format 3 (featurestore before named arrays with settings of their own), read as format 4.

Their arrays hold exactly what a format-4 store with the same settings holds, bit for bit; only
the attributes and commit records take another form (a flat spec, settings hashes computed
another way, parts keyed by feature). `convert` turns both into today's typed form in memory,
keeping every part that was committed under the old store's own hashes and giving it the new
settings hash: readers use stores of format 3 as they are, and `featurestore upgrade` (or any
build) writes the converted records and then the attributes, nothing else.
"""

from __future__ import annotations

from typing import Any

from featurestore.errors import StoreFormatError, UserError
from featurestore.settings import dump
from featurestore.spec import FeatureSpec
from featurestore.store.attrs import ArrayRecord, RootAttributes, parse_attributes
from featurestore.store.commits import CommitRecord, parse_record, part_hashes
from featurestore.store.layout import CLIPS

FORMAT = 3


def convert(old: dict[str, Any], documents: dict[int, Any], where: str
            ) -> tuple[RootAttributes, dict[int, CommitRecord]]:
    """Format-3 root attributes and commit-record documents as format 4 (records some earlier
    interrupted upgrade already rewrote are taken as they are)."""
    try:
        spec = FeatureSpec.from_dict(old["spec"], "spec", StoreFormatError)
        hashes = part_hashes(spec)
        stored = {CLIPS: old["decoding_hash"], **{name: old["arrays"][name]["hash"] for name in spec.names}}
        attrs = {
            "format_version": 4, "store_id": old["store_id"], "audio_root": old["audio_root"], "spec": spec.to_dict(),
            "manifest_hash": old["manifest_hash"], "dataset": old["dataset"], "labels": old["labels"],
            "n_clips": old["n_clips"], "chunk_clips": old["chunk_clips"], "shard_clips": old["shard_clips"],
            "build_state": old["build_state"], "versions": old.get("versions", {}),
            "arrays": {name: dump(ArrayRecord(hashes[name], old["arrays"][name]["added"])) for name in spec.names},
            "manifest_copy": old.get("manifest_copy"), "stats_values": old.get("stats_values", {}),
        }
    except (KeyError, TypeError) as exc:
        raise StoreFormatError(f"{where}: a store of format 3 without its field {exc}") from None
    except UserError as exc:
        raise StoreFormatError(f"{where}: {exc}") from None
    converted = parse_attributes(attrs, f"{where} (format 3)")
    records = {}
    for index, document in documents.items():
        record_where = f"{where}: commit record {index} (format 3)"
        if isinstance(document, dict) and "parts" not in document:
            records[index] = parse_record(document, index, record_where)
        elif (record := _record(document, index, stored, hashes, record_where)) is not None:
            records[index] = record
    return converted, records


def _record(old: Any, index: int, stored: dict[str, str], hashes: dict[str, str], where: str) -> CommitRecord | None:
    """The parts of a format-3 record that were committed under the store's hashes, re-hashed."""
    try:
        parts = old["parts"]
        clips = parts.get(CLIPS)
        document = {"shard": old["shard"], "store_id": old["store_id"], "start": old["start"], "stop": old["stop"],
                    "rows_hash": old["rows_hash"], "arrays": {}}
        if clips is not None and clips.get("settings_hash") == stored[CLIPS]:
            document["clips"] = {"settings_hash": hashes[CLIPS], "hash": clips["hash"], "ok": clips["ok"],
                                 "failed": clips["failed"], "errors": clips.get("errors", {}),
                                 "bytes": {"status": clips["bytes"]["status"], "length": clips["bytes"]["length"]}}
        for name, part in parts.items():
            if name == CLIPS or name not in hashes or part.get("settings_hash") != stored[name]:
                continue
            document["arrays"][name] = {"settings_hash": hashes[name], "hash": part["hash"],
                                        "bytes": part["bytes"][name],
                                        **({"stats": part["stats"], "split_hash": part["split_hash"]}
                                           if "stats" in part else {})}
    except (KeyError, TypeError, AttributeError) as exc:
        raise StoreFormatError(f"{where}: a record without its field {exc}") from None
    return parse_record(document, index, where)
