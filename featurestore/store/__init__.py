"""The store: one Zarr v3 group, every array's first axis the clip in manifest order.

One module per job: `layout` (arrays, chunks, shards, node names), `attrs` (the root attributes,
a typed document), `commits` (commit records and when they count), `state` (what a store holds,
read once and checked), `writer` (creating, growing and writing), `reader` (`open_store` and
`Store`), `inspect` (footprint, verify) and `legacy` (stores of format 3, read as today's).
"""

from featurestore.store.layout import FAILED, OK, PENDING
from featurestore.store.reader import FeatureArray, Store, open_store

__all__ = ["FAILED", "OK", "PENDING", "FeatureArray", "Store", "open_store"]
