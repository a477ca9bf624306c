"""Sub-commands `models`, `train`, `evaluate`, `predict`. Only argparse (and the stdlib-only environment
check) at import time."""

from __future__ import annotations

import argparse

from featurestore.environment import require
from featurestore.errors import UserError

HELP_ORDER = 30  # after the store's commands
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
                                          "valid, and evaluate it on test (metrics.json, report.md, figures in OUT). "
                                          "Options come from the defaults, then --recipe, then --config, then the "
                                          "flags given.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    p.add_argument("--config", metavar="FILE", help="options from a JSON file: a run's config.json, the best.json "
                                                    "of `featurestore tune`, or a flat {option: value} object")
    add_train_options(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("recipes", help="list the published setups `train --recipe` reproduces",
                              description="Every recipe's model, optimisation, augmentation, crops and search space.")
    p.set_defaults(func=_recipes)

    p = subparsers.add_parser("tune", help="search a recipe's hyperparameters with Optuna (resumable)",
                              description="Train one run per trial over the recipe's search space (the reports' "
                                          "spaces; `featurestore recipes` lists them), prune hopeless trials, and "
                                          "write trials.csv, tune.md, tune.png and best.json into OUT. The study "
                                          "lives in OUT/study.db: run the same command again to continue it.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--out", required=True, metavar="DIR", help="study folder (created, or continued)")
    p.add_argument("--trials", type=int, required=True, help="complete or pruned trials the study should reach")
    p.add_argument("--sampler", choices=("tpe", "random"), help="default: the recipe's (random for the GTZAN "
                                                                 "features report's randomized search, else TPE)")
    p.add_argument("--pruning", action=argparse.BooleanOptionalAction, default=True,
                   help="stop a trial whose learning curve falls below the median of earlier ones (default on)")
    add_train_options(p)  # fixed for every trial; --folds 0 turns the recipe's cross-validation off
    p.set_defaults(func=_tune)

    p = subparsers.add_parser("explore", help="t-SNE and K-means of a store's features, with silhouette scores",
                              description="Standardise a feature (per segment, or per clip its bands' means and "
                                          "stds), draw its t-SNE coloured by label and by K-means cluster (K = "
                                          "labels), and score the clusters (silhouette, ARI, NMI) into OUT.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--feature", help="default: handcrafted if the store has it, else logmel")
    p.add_argument("--split", choices=("all", "train", "valid", "test"), default="all")
    p.add_argument("--max-points", type=int, default=5000, help="points t-SNE draws, a seeded sample (default 5000)")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_explore)

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

    p = subparsers.add_parser("compare", help="paired comparison of runs on the same test clips",
                              description="Compare runs with the first (the baseline) on the clips both evaluated, "
                                          "from their predictions.parquet: the paired difference of each metric "
                                          "with a 95 %% interval from a group bootstrap, and McNemar's test for "
                                          "single-label accuracy. Runs evaluated on other clips (another manifest "
                                          "or split protocol) are refused.")
    p.add_argument("runs", metavar="RUN", nargs="+", help="run folders (or evaluate outputs such as RUN/eval-test), "
                                                          "the baseline first")
    p.add_argument("--out", metavar="DIR", help="folder for compare.md, compare.json and compare.png "
                                                "(default: the baseline's folder/compare)")
    p.set_defaults(func=_compare)

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


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options of a run, as flags; none has an argparse default, so `trainers.options` sees only
    what was typed and layers it over the recipe's and the plain defaults."""
    def opt(*names, **kw):
        p.add_argument(*names, default=argparse.SUPPRESS, **kw)

    on_off = argparse.BooleanOptionalAction
    opt("--recipe", help="a published setup's options (see `featurestore recipes`); any flag overrides them")
    opt("--model", help="see `featurestore models` (required without --recipe)")
    opt("--input", help="input kind (default: the model's natural one): logmel, mfcc, waveform, handcrafted, "
                        "waveform+mfcc")
    opt("--task", choices=("multilabel", "multiclass"), help="default: multilabel if any clip has several labels")
    opt("--epochs", type=int, help="default 30")
    opt("--batch-size", type=int, help="default 32")
    opt("--lr", type=float, help="learning rate (default 1e-3)")
    opt("--weight-decay", type=float, help="default 1e-4")
    opt("--optimizer", choices=("adam", "adamw", "sgd"), help="default adam")
    opt("--momentum", type=float, help="SGD momentum (default 0.9)")
    opt("--scheduler", choices=("plateau", "none"), help="ReduceLROnPlateau on --monitor (default plateau)")
    opt("--lr-patience", type=int, help="plateau epochs before the learning rate drops (default 3)")
    opt("--lr-factor", type=float, help="learning rate multiplier on a plateau (default 0.5)")
    opt("--patience", type=int, help="stop early after this many epochs without improvement")
    opt("--monitor", choices=("val_roc_auc", "val_pr_auc", "val_accuracy", "val_macro_f1", "val_loss"),
        help="checkpoint selection (default: val_roc_auc for multilabel, val_accuracy for multiclass)")
    opt("--class-weights", choices=("balanced",),
        help="weigh the loss by inverse class frequency (multilabel: negatives/positives per tag)")
    opt("--crop-frames", type=int, help="train on random log-mel/MFCC windows of this many frames")
    opt("--crop-samples", type=int, help="train on random waveform windows of this many samples")
    opt("--eval-crops", type=int, help="evaluate on K evenly spaced windows, averaged (default 1: the centre one)")
    opt("--aligned-crops", action=on_off,
        help="waveform + MFCC input: both windows cover the same seconds (default on)")
    opt("--image-size", type=int, help="spectrograms as SIZE x SIZE images scaled to [0, 1] (YOLO report: 416, 640)")
    opt("--segments", choices=("split", "flat"),
        help="handcrafted input: one sample per segment, evaluated per track (split, default), "
             "or all segments as one vector (flat)")
    opt("--augment", action=on_off, help="train-time augmentation (default on; recipes say their own)")
    opt("--aug-prob", type=float, help="probability of every augmentation not given its own (default 0.5)")
    for name, what in (("wave-noise-p", "Gaussian noise on waveforms"), ("wave-mask-p", "a zeroed waveform span"),
                       ("time-mask-p", "a SpecAugment time mask"), ("freq-mask-p", "a SpecAugment mel/MFCC mask"),
                       ("feature-noise-p", "Gaussian noise on normalised features")):
        opt(f"--{name}", type=float, help=f"probability of {what} (default --aug-prob)")
    opt("--time-mask", type=int, help="SpecAugment: at most this many time bins (default 30)")
    opt("--freq-mask", type=int, help="SpecAugment: at most this many mel/MFCC bins (default 2)")
    opt("--noise-sigma", type=float, help="Gaussian noise on normalised features (default 0.015)")
    opt("--split", metavar="TRAIN/TEST", help="re-split every usable clip, e.g. 70/30 (groups kept apart; the "
                                              "test set is then not the manifest's, and reports say so); valid is "
                                              "then --valid-fraction of train; manifest: keep the manifest's splits "
                                              "(undoes a recipe's re-split)")
    opt("--valid-fraction", type=float, help="with --split: share of train held out for selection (default 0.1)")
    opt("--folds", type=int, help="K-fold cross-validation over train+valid, groups kept together")
    opt("--init-from", nargs="+", metavar="RUN", help="mixnet: start from the encoders of an nnet1 and an nnet2 run")
    opt("--freeze-encoders", action=on_off, help="with --init-from: train only the classifier")
    opt("--device", help="auto, cpu or cuda (default auto)")
    opt("--precision", choices=("auto", "bf16", "fp16", "fp32"),
        help="mixed precision on CUDA: bf16 autocast, or fp16 with a gradient scaler (default auto: bf16 where the "
             "GPU has it, else fp16; fp32 on the CPU)")
    opt("--channels-last", action=on_off, help="spectrogram and image batches in channels-last layout (default off)")
    opt("--compile", action=on_off, help="torch.compile the model for training steps; falls back to eager with one "
                                         "line where this machine cannot compile (default off)")
    opt("--seed", type=int, help="all randomness follows from it (default 0)")
    opt("--num-workers", type=int, help="DataLoader workers (default 4, at most the cores available)")
    opt("--block-clips", type=int, help="clips per read (default: whole chunks, about 128 clips)")
    opt("--shuffle-buffer", type=int, help="clips in the shuffle buffer (default: about 128 MB)")
    opt("--allow-partial", action="store_true", help="train on an unfinished store's ok clips")
    opt("--verify-store", action="store_true",
        help="re-hash every shard before training, as `featurestore verify` does (default: a cheap check "
             "of the shard files against the commit records)")


def given_options(args: argparse.Namespace) -> dict:
    from trainers.options import DEFAULTS

    return {k: v for k, v in vars(args).items() if k in DEFAULTS}


def _models(args) -> int:
    require()  # a broken install is one line, not a traceback from an import
    from trainers.zoo import model_table

    print(model_table(args.store, args.classes))
    return 0


def _train(args) -> int:
    require()  # a broken install is one line, not a traceback from an import
    from trainers.loop import train
    from trainers.options import resolve, to_config

    options = resolve(config_file=args.config, flags=given_options(args))
    result = train(to_config(args.store, args.out, options, resume=args.resume))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.4f}" for k, v in _headline(result).items()))
    return 0


def _tune(args) -> int:
    require()
    from trainers.tune import TuneConfig, tune

    given = given_options(args)
    name = given.pop("recipe", None)
    if name is None:
        raise UserError("featurestore tune needs --recipe NAME: the recipe gives the search space "
                         "(see `featurestore recipes`)")
    folds = given.pop("folds", None)
    result = tune(TuneConfig(store=args.store, recipe=name, out=args.out, trials=args.trials, sampler=args.sampler,
                             folds=folds, pruning=args.pruning, overrides=given))
    best = "no trial completed" if result["best_trial"] is None else (
        f"best trial {result['best_trial']}: {result['best_value']:.4f}")
    print(f"wrote {args.out}: {result['trials']} trials, {best} (validation); options in {args.out}/best.json")
    if result["best_test"]:
        print(f"test result of the best {result['best_test']}")
    return 0


def _explore(args) -> int:
    require()
    from trainers.explore import ExploreConfig, explore

    summary = explore(ExploreConfig(store=args.store, out=args.out, feature=args.feature, split=args.split,
                                    max_points=args.max_points, perplexity=args.perplexity, seed=args.seed))
    print(f"{summary['feature']}: {summary['points']} points, K = {summary['k']}: silhouette (K-means) "
          f"{summary['silhouette_kmeans']:.4f}, silhouette (labels) {summary['silhouette_labels']:.4f}, "
          f"ARI {summary['adjusted_rand_index']:.4f}; wrote {args.out}/tsne.png, explore.json, points.csv")
    return 0


def _recipes(args) -> int:
    from trainers.recipes import recipe_table

    print(recipe_table())
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


def _compare(args) -> int:
    require()
    from pathlib import Path

    from trainers.compare import compare

    out, results = compare(args.runs, args.out or str(Path(args.runs[0]) / "compare"))
    for result in results:
        print(f"{result.run} against {Path(args.runs[0]).name} (run minus baseline, 95 % interval):")
        for metric, r in result.rows.items():
            print(f"  {metric:16s} {r['baseline']:.4f} -> {r['run']:.4f}  {r['difference']:+.4f} "
                  f"[{r['low']:+.4f}, {r['high']:+.4f}]")
        if result.mcnemar is not None:
            t = result.mcnemar
            print(f"  McNemar: {t['run_only']} clips right only in the run, {t['baseline_only']} only in the "
                  f"baseline, p = {t['p_value']:.4g}")
    print(f"wrote {out}/compare.md, compare.json, compare.png")
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
