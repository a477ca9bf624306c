"""Sub-commands `models`, `train`, `evaluate`, `predict`. Only argparse (and the stdlib-only environment
check) at import time."""

from __future__ import annotations

import argparse

from featurestore.environment import require

CHECKPOINTS = ("best.pt", "last.pt")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the model zoo: input kind and parameter count",
                              description="List the models with the input they read and their parameter count "
                                          "(for the mtat-seed / handcrafted presets' shapes, or a store's).")
    p.add_argument("--store", help="count parameters for this store's feature sizes and labels")
    p.add_argument("--classes", type=int, default=50, help="output classes when no --store is given (default 50)")
    p.set_defaults(func=_models)

    p = subparsers.add_parser("train", help="train a model on a feature store",
                              description="Train a model on a store's train split, select the best epoch on "
                                          "valid, and evaluate it on test (metrics.json, report.md, figures in OUT).")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--model", required=True, help="see `featurestore models`")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    p.add_argument("--input", help="input kind (default: the model's natural one): logmel, mfcc, waveform, "
                                   "handcrafted, waveform+mfcc")
    p.add_argument("--task", choices=("multilabel", "multiclass"),
                   help="default: multilabel if any clip has several labels")
    p.add_argument("--epochs", type=int, default=30, help="default 30")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="default 1e-4")
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam", help="default adam")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--scheduler", choices=("plateau", "none"), default="plateau", help="ReduceLROnPlateau on --monitor")
    p.add_argument("--lr-patience", type=int, default=3, help="plateau epochs before the learning rate drops")
    p.add_argument("--lr-factor", type=float, default=0.5, help="learning rate multiplier on a plateau")
    p.add_argument("--patience", type=int, help="stop early after this many epochs without improvement")
    p.add_argument("--monitor", choices=("val_roc_auc", "val_pr_auc", "val_accuracy", "val_macro_f1", "val_loss"),
                   help="checkpoint selection (default: val_roc_auc for multilabel, val_accuracy for multiclass)")
    p.add_argument("--class-weights", choices=("balanced",),
                   help="weigh the loss by inverse class frequency (multilabel: negatives/positives per tag)")
    p.add_argument("--crop-frames", type=int, help="train on random log-mel/MFCC windows of this many frames")
    p.add_argument("--crop-samples", type=int, help="train on random waveform windows of this many samples")
    p.add_argument("--eval-crops", type=int, default=1,
                   help="evaluate on K evenly spaced windows, averaged (default 1: the centre one)")
    p.add_argument("--segments", choices=("split", "flat"), default="split",
                   help="handcrafted input: one sample per segment, evaluated per track (split), "
                        "or all segments as one vector (flat)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="train-time augmentation with the FMA report's recipes (default on)")
    p.add_argument("--aug-prob", type=float, default=0.5, help="probability of each augmentation (default 0.5)")
    p.add_argument("--time-mask", type=int, default=30, help="SpecAugment: at most this many time bins")
    p.add_argument("--freq-mask", type=int, default=2, help="SpecAugment: at most this many mel/MFCC bins")
    p.add_argument("--noise-sigma", type=float, default=0.015, help="Gaussian noise on normalised features")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (default on; the CPU always trains in float32)")
    p.add_argument("--seed", type=int, default=0, help="all randomness follows from it (default 0)")
    p.add_argument("--num-workers", type=int, default=4,
                   help="DataLoader workers (default 4, at most the cores available)")
    p.add_argument("--block-clips", type=int, help="clips per read (default: whole chunks, about 128 clips)")
    p.add_argument("--shuffle-buffer", type=int, help="clips in the shuffle buffer (default: about 128 MB)")
    p.add_argument("--folds", type=int, help="K-fold cross-validation over train+valid, groups kept together")
    p.add_argument("--allow-partial", action="store_true", help="train on an unfinished store's ok clips")
    p.add_argument("--verify-store", action="store_true",
                   help="re-hash every shard before training, as `featurestore verify` does (default: a cheap check "
                        "of the shard files against the commit records)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="evaluate a trained run on a split",
                              description="Recompute a run's metrics, report and figures on a split.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test")
    p.add_argument("--store", help="another store built with the run's feature spec (default: the run's)")
    p.add_argument("--out", help="folder for metrics.json, report.md and figures (default RUN/eval-SPLIT)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best.pt")
    p.add_argument("--device", default="auto")
    p.add_argument("--verify-store", action="store_true", help="re-hash every shard of the store first")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("predict", help="label audio files with a trained run",
                              description="Decode files with the run's store spec and print the top labels. A file "
                                          "that cannot be used is reported and the others are still labelled "
                                          "(exit 1 if any could not be).")
    p.add_argument("run", metavar="RUN")
    p.add_argument("files", metavar="PATH", nargs="+", help="audio files, folders (searched recursively) or quoted "
                                                            "glob patterns ('music/**/*.mp3')")
    p.add_argument("--top", type=int, default=5, help="labels to show per file (default 5)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best.pt")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--csv", metavar="OUT", help="also write one row per file: file, error, top label and "
                                                "probability, every label's probability")
    p.set_defaults(func=_predict)


def _models(args) -> int:
    require()  # a broken install is one line, not a traceback from an import
    from trainers.zoo import model_table

    print(model_table(args.store, args.classes))
    return 0


def _train(args) -> int:
    require()  # a broken install is one line, not a traceback from an import
    from trainers.augment import AugmentConfig
    from trainers.config import TrainConfig
    from trainers.inputs import InputConfig
    from trainers.loop import train
    from trainers.models import model_info

    p = args.aug_prob if args.augment else 0.0
    augment = AugmentConfig(wave_noise_p=p, wave_mask_p=p, time_mask_p=p, freq_mask_p=p, feature_noise_p=p,
                            time_mask_bins=args.time_mask, freq_mask_bins=args.freq_mask,
                            feature_noise_sigma=args.noise_sigma)
    inputs = InputConfig(kind=args.input or model_info(args.model).natural_input, crop_frames=args.crop_frames,
                         crop_samples=args.crop_samples, eval_crops=args.eval_crops, segments=args.segments == "split")
    config = TrainConfig(
        store=args.store, model=args.model, out=args.out, input=inputs, augment=augment, task=args.task,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        optimizer=args.optimizer, momentum=args.momentum, scheduler=args.scheduler, lr_patience=args.lr_patience,
        lr_factor=args.lr_factor, patience=args.patience, monitor=args.monitor, class_weights=args.class_weights,
        device=args.device, amp=args.amp, seed=args.seed, num_workers=args.num_workers, block_clips=args.block_clips,
        shuffle_buffer=args.shuffle_buffer, folds=args.folds, allow_partial=args.allow_partial,
        verify_store=args.verify_store, resume=args.resume,
    )
    result = train(config)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.4f}" for k, v in _headline(result).items()))
    return 0


def _headline(result: dict) -> dict[str, float]:
    """The test numbers people look for first (the means over folds for a cross-validation)."""
    test = result["test"]["mean"] if "folds" in result else result["test"]
    return {k: test[k] for k in ("roc_auc_macro", "pr_auc_macro", "accuracy", "macro_f1") if test.get(k) is not None}


def _evaluate(args) -> int:
    require()  # a broken install is one line, not a traceback from an import
    from trainers.evaluate import evaluate_run

    out, evaluation = evaluate_run(args.run, split=args.split, store=args.store, out=args.out,
                                   which=args.checkpoint, device=args.device, verify_store=args.verify_store)
    for k, v in evaluation.summary.items():
        print(f"{k:16s} {v:.4f}" if isinstance(v, float) else f"{k:16s} {v}")
    for note in evaluation.notes:
        print(f"note: {note}")
    print(f"wrote {out}/metrics.json, report.md and figures")
    return 0


def _predict(args) -> int:
    require()  # a broken install is one line, not a traceback from an import
    import json
    import sys

    from trainers.io import write_text
    from trainers.predict import predict_files, predictions_table

    results = []
    for r in predict_files(args.run, args.files, top=args.top, which=args.checkpoint):
        results.append(r)
        if r["error"] is not None:
            print(f"{r['file']}: cannot use this audio: {r['error']}", file=sys.stderr)
        elif not args.json:
            print(f"{r['file']}: " + ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"]), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    if args.csv:
        write_text(args.csv, predictions_table(results).to_csv(index=False))
    failed = sum(r["error"] is not None for r in results)
    if failed:
        print(f"featurestore predict: {failed} of {len(results)} file(s) could not be used (listed above)",
              file=sys.stderr)
    return 1 if failed else 0
