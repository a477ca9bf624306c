"""Re-export of the one user-error type, which lives at the bottom of the dependency chain.

`manifests` is the lowest package (trainers -> featurestore -> manifests), so `UserError` is
defined there and every package raises the same class; the CLI catches it once.
"""

from manifests.errors import UserError

__all__ = ["UserError"]
