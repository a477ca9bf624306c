"""What a build returns: clip counts, the first failure reasons, shards built and skipped, how it
changed the store, and where its time went."""

from __future__ import annotations

from dataclasses import dataclass

from featurestore.builder.profile import BuildProfile


@dataclass(frozen=True)
class BuildReport:
    url: str
    ok: int
    failed: int
    pending: int
    first_reasons: tuple[str, ...]  # "clip_id (path): reason", in store order
    elapsed: float  # seconds
    shards: int
    shards_built: int  # and committed by this run
    shards_skipped: int  # already committed by an earlier run
    shard_failures: tuple[str, ...] = ()  # "shard-00003 (clips 24-31): why its task failed"; clips stay pending
    decoded: int = 0  # clips decoded by this run
    changes: tuple[str, ...] = ()  # how this run changed an existing store: "added handcrafted", ...
    profile: BuildProfile | None = None  # where the time went

    @property
    def complete(self) -> bool:
        """Every clip is built (ok or failed with its reason)."""
        return self.pending == 0

    def summary(self) -> str:
        lines = [
            f"{self.url}: ok {self.ok}, failed {self.failed}, pending {self.pending} of "
            f"{self.ok + self.failed + self.pending} clips; {self.shards} shards ({self.shards_built} built now, "
            f"{self.shards_skipped} already committed) in {self.elapsed:.1f} s; {self.decoded} clips decoded"
        ]
        if self.changes:
            lines.append("grew the store: " + "; ".join(self.changes))
        if self.first_reasons:
            lines.append("first failures:")
            lines += [f"  {r}" for r in self.first_reasons]
        if self.shard_failures:
            lines.append(f"{len(self.shard_failures)} shard(s) could not be built (their clips stay pending; "
                         "re-run the same command to retry them):")
            lines += [f"  {r}" for r in self.shard_failures]
        return "\n".join(lines)
