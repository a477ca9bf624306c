"""`StoreDataModule`: a store's train, validation and test splits as a PyTorch Lightning data module.

    dm = trainers.StoreDataModule("s.zarr", feature="logmel", crop_frames=128, batch_size=32)
    trainer = pytorch_lightning.Trainer(max_epochs=10)
    trainer.fit(model, datamodule=dm)   # dm.classes names the target vector's entries

Lightning itself is not a dependency of this package (`pip install pytorch-lightning`, or the
`test` extra); `lightning.pytorch` serves where `pytorch_lightning` is not installed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from featurestore.errors import UserError
from trainers.datasets import StoreDataset, StreamingStoreDataset

try:
    import pytorch_lightning as pl
except ImportError:  # the unified package
    try:
        import lightning.pytorch as pl
    except ImportError:
        raise UserError("trainers.StoreDataModule needs PyTorch Lightning: pip install pytorch-lightning") from None


class _EpochLoader(DataLoader):
    """A loader over a StreamingStoreDataset that sets the dataset's epoch each time it is iterated
    (Lightning sets a sampler's epoch, never a dataset's): the trainer's epoch when attached."""

    def __init__(self, module: StoreDataModule, dataset: StreamingStoreDataset, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self.module, self.epochs = module, 0

    def __iter__(self):
        trainer = self.module.trainer
        self.dataset.set_epoch(trainer.current_epoch if trainer is not None else self.epochs)
        self.epochs += 1
        return super().__iter__()


class StoreDataModule(pl.LightningDataModule):
    """Loaders of `(x, y)` batches over a store's splits (see `trainers.StoreDataset`).

    Training reads `StoreDataset` shuffled (a `torch.Generator` seeded by `seed`), or with
    `streaming` a `StreamingStoreDataset` (stores larger than memory; epoch-seeded, split across
    workers and ranks); validation and testing read in store order with centre windows.
    `classes` names the target vector's entries once `setup` has run.
    """

    def __init__(self, store: Any, feature: str = "logmel", *, batch_size: int = 32, num_workers: int = 2,
                 crop_frames: int | None = None, crop_samples: int | None = None, streaming: bool = False,
                 seed: int = 0, allow_partial: bool = False):
        super().__init__()
        self.store, self.batch_size, self.num_workers = store, batch_size, num_workers
        self.streaming, self.seed = streaming, seed
        self.options = {"feature": feature, "crop_frames": crop_frames, "crop_samples": crop_samples,
                        "allow_partial": allow_partial}
        self.classes: tuple[str, ...] = ()

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = (StreamingStoreDataset(self.store, "train", seed=self.seed, **self.options)
                              if self.streaming else StoreDataset(self.store, "train", **self.options))
            self.valid_set = StoreDataset(self.store, "valid", **self.options)
            self.classes = self.train_set.classes
        if stage in (None, "test"):
            self.test_set = StoreDataset(self.store, "test", **self.options)
            self.classes = self.test_set.classes
        if stage == "validate":
            self.valid_set = StoreDataset(self.store, "valid", **self.options)
            self.classes = self.valid_set.classes

    def _common(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "num_workers": self.num_workers,
                "persistent_workers": self.num_workers > 0}

    def train_dataloader(self) -> DataLoader:
        if self.streaming:
            return _EpochLoader(self, self.train_set, **self._common())
        return DataLoader(self.train_set, shuffle=True, generator=torch.Generator().manual_seed(self.seed),
                          **self._common())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid_set, **self._common())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, **self._common())
