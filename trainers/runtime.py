"""The pieces every command shares: the device, loaders, model + input pipeline, and inference."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from featurestore.errors import UserError
from featurestore.spec import FeatureSpec
from trainers.augment import AugmentConfig
from trainers.datasets import StoreDataset, StreamingStoreDataset
from trainers.inputs import InputConfig, InputPipeline, average_views
from trainers.models import build_model
from trainers.tasks import AveragedLoss, Task


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 mixed precision on CUDA (unless disabled); full float32 on the CPU (and deterministic there)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def _worker_init(_: int) -> None:
    """Workers are the loader's parallelism: one thread each for torch, Blosc and Zarr's codec pool
    (measured: about a fifth less CPU per sample than their multi-threaded defaults here)."""
    import numcodecs.blosc
    import zarr

    torch.set_num_threads(1)
    numcodecs.blosc.set_nthreads(1)
    zarr.config.set({"threading.max_workers": 1})


def _as_made(batch):
    return batch  # the datasets collate their own batches


class _RawBatches(torch.utils.data.Dataset):
    """A StoreDataset indexed by a list of items (a BatchSampler's batch): one raw batch."""

    def __init__(self, dataset: StoreDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, items: list[int]) -> dict:
        return self.dataset.raw_batch(items)


class Loader:
    """Raw batches of a StreamingStoreDataset or StoreDataset through a DataLoader, as dicts of tensors.

    The datasets make whole batches in the worker processes (one message per batch); the small
    NumPy parts become tensors here, without a copy. Workers persist from one iteration (epoch)
    to the next, so a loader made once per run pays the process start-up once.
    """

    def __init__(self, dataset: StreamingStoreDataset | StoreDataset, *, batch_size: int, workers: int,
                 device: torch.device):
        common = {"batch_size": None, "num_workers": workers, "pin_memory": device.type == "cuda",
                  "worker_init_fn": _worker_init if workers else None, "collate_fn": _as_made,
                  "persistent_workers": workers > 0,
                  # its own generator: starting or resetting workers must not draw from torch's global
                  # one, which crops, augmentation and dropout use (a resumed run would diverge)
                  "generator": torch.Generator().manual_seed(0)}
        if isinstance(dataset, StreamingStoreDataset):
            self.loader = DataLoader(dataset.batches(batch_size), **common)
        else:
            self.loader = DataLoader(_RawBatches(dataset), sampler=BatchSampler(SequentialSampler(dataset), batch_size,
                                                                                False), **common)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.loader:
            yield {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def make_loader(dataset: StreamingStoreDataset | StoreDataset, *, batch_size: int, workers: int,
                device: torch.device) -> Loader:
    return Loader(dataset, batch_size=batch_size, workers=workers, device=device)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def make_model(model: str, spec: FeatureSpec, inputs: InputConfig, n_classes: int,
               augment: AugmentConfig | None = None) -> tuple[torch.nn.Module, InputPipeline]:
    return (build_model(model, inputs.features(spec), inputs.sample_shape(spec), n_classes),
            InputPipeline(spec, inputs, augment))


class Inference(NamedTuple):
    y: np.ndarray  # (clips, classes) targets
    prob: np.ndarray  # (clips, classes): each clip's views averaged
    index: np.ndarray  # store positions
    loss: float  # of the averaged predictions (NaN without a loss)
    view_y: np.ndarray | None = None  # with `per_view`: one row per view that counts (a decoded segment, a crop)
    view_prob: np.ndarray | None = None


@torch.no_grad()
def infer(model, pipeline: InputPipeline, loader, task: Task, device: torch.device,
          loss_fn: AveragedLoss | None = None, amp: bool = True, per_view: bool = False) -> Inference:
    """Per-clip probabilities averaged over each clip's views, and the loss of those averages."""
    model.eval()
    ys, probs, index, views_y, views_p = [], [], [], [], []
    loss_sum, loss_weight = torch.zeros((), device=device), torch.zeros((), device=device)
    for batch in loader:
        batch = to_device(batch, device)
        x, w = pipeline(batch, train=False)
        with autocast(device, amp):
            logits = model(x).float()
        if loss_fn is not None:
            total, weight = loss_fn(logits, w, batch["y"])
            loss_sum, loss_weight = loss_sum + total, loss_weight + weight
        p = task.probabilities(logits)
        if per_view:
            keep = w.flatten() > 0
            views_p.append(p[keep].cpu())
            views_y.append(batch["y"].repeat_interleave(w.shape[1], 0)[keep].cpu())
        probs.append(average_views(p, w).cpu())
        ys.append(batch["y"].cpu())
        index.append(batch["index"].cpu())
    loss = (loss_sum / loss_weight).item() if loss_fn is not None and loss_weight > 0 else math.nan
    extra = (torch.cat(views_y).numpy(), torch.cat(views_p).numpy()) if per_view else ()
    return Inference(torch.cat(ys).numpy(), torch.cat(probs).numpy(), torch.cat(index).numpy(), loss, *extra)
