"""The pieces every command shares: the device, loaders, model + input pipeline, and inference."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from featurestore.errors import UserError
from featurestore.progress import Progress
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


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 autocast on a CUDA device that has it, else fp16 (with a gradient scaler);
    float32 on the CPU, where autocast is slower and would change results."""
    if precision != "auto":
        if precision != "fp32" and device.type != "cuda":
            raise UserError(f"--precision {precision} needs a CUDA device; this run is on {device}: "
                            "use --precision fp32 or auto")
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str):
    """Mixed precision for a resolved `precision` (fp32: off)."""
    return torch.autocast(device.type, dtype=_DTYPES.get(precision, torch.bfloat16), enabled=precision in _DTYPES)


@dataclass(frozen=True)
class Acceleration:
    """How a run uses its device, decided once from the options and the device (config.json's
    "resolved" records it): the autocast precision, channels-last layout, and whether training
    steps run through torch.compile (`compile_note` says why not, when it was asked for)."""

    precision: str
    channels_last: bool
    compile: bool
    compile_note: str | None = None

    @classmethod
    def resolve(cls, precision: str, channels_last: bool, compile: bool, device: torch.device) -> Acceleration:
        note = _compile_problem(device) if compile else None
        if note:
            print(f"--compile: torch.compile cannot compile on this machine ({note}); training without it")
        return cls(resolve_precision(precision, device), channels_last, compile and note is None, note)

    def prepare(self, model: torch.nn.Module) -> tuple[torch.nn.Module, Callable]:
        """The model in its layout, and the callable a training step runs it through."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model, torch.compile(model) if self.compile else model

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """fp16 needs its gradients scaled; for every other precision the scaler passes them through."""
        return torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")


def _compile_problem(device: torch.device) -> str | None:
    """None if torch.compile's default backend compiles a tiny function on `device`, else its
    error's first line (no C++ compiler for the CPU, no Triton for the GPU, ...)."""
    # inductor's C++ toolchain lookup logs a CUDA_HOME warning on machines without CUDA: not news here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        torch.compile(lambda x: x.sin() + 1)(torch.ones(4, device=device))
    except Exception as exc:  # noqa: BLE001 - any failure of the backend means: run eagerly
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def memory_format(x, channels_last: bool):
    """Images and spectrogram batches (4-D) in channels-last layout when asked (faster convolutions
    on tensor cores); other inputs as they are."""
    if isinstance(x, tuple):
        return tuple(memory_format(t, channels_last) for t in x)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


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

    The datasets make whole batches, windows cut, in the worker processes (one message per
    batch); on CUDA the DataLoader pins every tensor of it. Workers persist from one iteration
    (epoch) to the next, so a loader made once per run pays the process start-up once.
    """

    def __init__(self, dataset: StreamingStoreDataset | StoreDataset, *, batch_size: int, workers: int,
                 device: torch.device):
        common = {"batch_size": None, "num_workers": workers, "pin_memory": device.type == "cuda",
                  "worker_init_fn": _worker_init if workers else None, "collate_fn": _as_made,
                  "persistent_workers": workers > 0,
                  # its own generator: starting or resetting workers must not draw from torch's global
                  # one, which crops, augmentation and dropout use (a resumed run would diverge)
                  "generator": torch.Generator().manual_seed(0)}
        self.batches = math.ceil(len(dataset) / batch_size)
        if isinstance(dataset, StreamingStoreDataset):
            self.loader = DataLoader(dataset.batches(batch_size), **common)
        else:
            self.loader = DataLoader(_RawBatches(dataset), sampler=BatchSampler(SequentialSampler(dataset), batch_size,
                                                                                False), **common)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.loader)

    def __len__(self) -> int:
        return self.batches


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
    view_index: np.ndarray | None = None  # each view's store position
    view_number: np.ndarray | None = None  # and its number among its clip's views (a segment's)


@torch.no_grad()
def infer(model, pipeline: InputPipeline, loader, task: Task, device: torch.device,
          loss_fn: AveragedLoss | None = None, precision: str = "fp32", per_view: bool = False,
          channels_last: bool = False, label: str = "evaluating", bar: bool | None = None) -> Inference:
    """Per-clip probabilities averaged over each clip's views, and the loss of those averages.

    Results stay on the device until the split is done (one copy to the host at the end), and
    cuDNN's autotuner is off: evaluation shapes change (views per clip, a ragged last batch)."""
    model.eval()
    ys, probs, index, views_y, views_p, views_i, views_n = [], [], [], [], [], [], []
    loss_sum, loss_weight = torch.zeros((), device=device), torch.zeros((), device=device)
    tuning, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    progress = Progress(len(loader), label=label, unit="batches", bar=bar)
    try:
        for batch in loader:
            progress.update()
            batch = to_device(batch, device)
            x, w = pipeline(batch, train=False)
            with autocast(device, precision):
                logits = model(memory_format(x, channels_last)).float()
            if loss_fn is not None:
                total, weight = loss_fn(logits, w, batch["y"])
                loss_sum, loss_weight = loss_sum + total, loss_weight + weight
            p = task.probabilities(logits)
            if per_view:
                keep = w.flatten() > 0
                views_p.append(p[keep])
                views_y.append(batch["y"].repeat_interleave(w.shape[1], 0)[keep])
                views_i.append(batch["index"].repeat_interleave(w.shape[1])[keep])
                views_n.append(torch.arange(w.shape[1], device=w.device).repeat(w.shape[0])[keep])
            probs.append(average_views(p, w))
            ys.append(batch["y"])
            index.append(batch["index"])
    finally:
        progress.close()
        torch.backends.cudnn.benchmark = tuning
    host = lambda parts: torch.cat(parts).cpu().numpy()  # noqa: E731
    loss = (loss_sum / loss_weight).item() if loss_fn is not None and loss_weight > 0 else math.nan
    extra = (host(views_y), host(views_p), host(views_i), host(views_n)) if per_view else ()
    return Inference(host(ys), host(probs), host(index), loss, *extra)
