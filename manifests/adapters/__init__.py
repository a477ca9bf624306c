"""Dataset adapters: each turns a dataset's own metadata into a `Manifest`."""

from manifests.adapters.csv import csv
from manifests.adapters.fma import fma
from manifests.adapters.folder import folder
from manifests.adapters.gtzan import gtzan
from manifests.adapters.mtat import mtat

__all__ = ["csv", "fma", "folder", "gtzan", "mtat"]
