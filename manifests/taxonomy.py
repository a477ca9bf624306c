"""Taxonomies: which raw tags make up each label (parent genre).

Raw tag vocabularies are noisy (MTAT has `clasical` beside `classical`, `jazzy` beside
`jazz`); a taxonomy folds them into a few parents. It is data, so it is hashed into the
manifest: two manifests with the same taxonomy name but different contents can be told apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomllib

from manifests.errors import UserError
from manifests.textio import check_utf8, read_bytes


@dataclass(frozen=True)
class Taxonomy:
    name: str
    parents: tuple[tuple[str, tuple[str, ...]], ...]  # (label, its raw tags), in vocabulary order

    @property
    def labels(self) -> list[str]:
        return [label for label, _tags in self.parents]

    def hash(self) -> str:
        canonical = [[label, sorted(set(tags))] for label, tags in self.parents]
        return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()

    def matrix(self, tags: Sequence[str], source: str) -> np.ndarray:
        """(len(tags), labels) bool: tag i counts towards label j. Every tag named must exist."""
        index = {tag: i for i, tag in enumerate(tags)}
        out = np.zeros((len(tags), len(self.parents)), dtype=bool)
        for j, (label, members) in enumerate(self.parents):
            for tag in members:
                if tag not in index:
                    raise UserError(
                        f"taxonomy {self.name}: tag {tag!r} (under {label!r}) is not a column of {source};"
                        " fix the taxonomy's spelling or remove the tag"
                    )
                out[index[tag], j] = True
        return out


MTAT_7 = Taxonomy(
    "mtat-7",
    (
        ("Rock", ("rock", "hard rock", "soft rock", "punk", "metal", "heavy metal")),
        ("Classical", ("classical", "clasical", "opera", "baroque", "medieval", "operatic")),
        (
            "Electronic",
            (
                "electronic",
                "electro",
                "electronica",
                "techno",
                "trance",
                "house",
                "disco",
                "industrial",
                "ambient",
                "new age",
            ),
        ),
        ("Jazz_Blues", ("jazz", "jazzy", "blues", "funk", "funky")),
        ("Folk_Country", ("folk", "country", "celtic", "irish")),
        ("Urban", ("hip hop", "rap", "reggae")),
        ("World", ("world", "indian", "india", "arabic", "middle eastern", "eastern", "oriental", "spanish", "tribal")),
    ),
)


def top_tags(tags: Sequence[str], counts: Sequence[int], k: int) -> Taxonomy:
    """The k most frequent tags, each its own label (ties: the tag that comes first)."""
    order = np.lexsort((np.arange(len(tags)), -np.asarray(counts)))[:k]
    return Taxonomy(f"top{k}", tuple((tags[i], (tags[i],)) for i in order))


def load_taxonomy(path: str | Path) -> Taxonomy:
    """A TOML or JSON file mapping each label to its list of raw tags, in label order."""
    path = Path(path)
    text = check_utf8(path, read_bytes(path)).decode("utf-8")
    try:
        mapping = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {exc.lineno}: not valid JSON: {exc.msg}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise UserError(f"{path}: expected a table of label = [tags, ...]")
    parents = []
    for label, tags in mapping.items():
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
            raise UserError(f"{path}: label {label!r} must list one or more tag names")
        parents.append((label, tuple(tags)))
    return Taxonomy(path.name, tuple(parents))
