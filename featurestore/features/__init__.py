"""Feature kinds as plug-ins: each is one `Feature` subclass with its own settings dataclass,
found by name in the registry."""

from featurestore.features.base import LAYOUTS, Feature, NoSettings, frames
from featurestore.features.registry import ENTRY_POINT_GROUP, available, feature_class, rediscover, register

__all__ = ["ENTRY_POINT_GROUP", "LAYOUTS", "Feature", "NoSettings", "available", "feature_class", "frames",
           "rediscover", "register"]
