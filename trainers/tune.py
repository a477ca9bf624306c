"""`featurestore tune`: a hyperparameter search over a recipe's space, each trial a complete run.

Optuna keeps the study in SQLite (OUT/study.db), so running the same command again continues
it: trials that finished stay, a trial whose process was killed is marked failed once its
heartbeat is `GRACE_SECONDS` old and tried again with the same parameters, and the study stops
when `trials` trials have completed or been pruned. Each trial trains into OUT/trials/trial-NNNN
(history, checkpoints, report) and reports its monitored value after every epoch, which the
median pruner uses to stop hopeless trials early. After every trial OUT holds trials.csv,
tune.md, tune.png and best.json, the best options as `featurestore train --config` reads them.
"""

from __future__ import annotations

import math
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.errors import UserError
from trainers.io import atomic_path, read_json, write_json, write_text
from trainers.options import resolve, to_config
from trainers.recipes import Recipe, recipe
from trainers.tasks import MONITORS

STUDY = "study.db"
SETTINGS = "tune.json"
HEARTBEAT_SECONDS = 2
GRACE_SECONDS = 6  # a trial silent this long belonged to a process that died
SAMPLERS = ("tpe", "random")


@dataclass(frozen=True)
class TuneConfig:
    store: str
    recipe: str
    out: str
    trials: int
    sampler: str | None = None  # None: the recipe's (random for the report that ran a randomized search)
    folds: int | None = None  # None: the recipe's; 0: no cross-validation
    pruning: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # train options fixed for every trial

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise UserError("--trials must be >= 1")
        if self.sampler not in (None, *SAMPLERS):
            raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}")
        if self.folds is not None and self.folds == 1:
            raise UserError("--folds must be 0 (none) or >= 2")
        overlap = sorted(set(self.overrides) & set(recipe(self.recipe).space))
        if overlap:
            raise UserError(f"{', '.join(overlap)} is searched by recipe {self.recipe}: leave it out of the "
                            "fixed options")

    @property
    def spec(self) -> Recipe:
        return recipe(self.recipe)

    def settings(self) -> dict[str, Any]:
        """What a resumed study must share with the one it continues (everything but `trials`)."""
        r = self.spec
        return {"store": self.store, "recipe": self.recipe, "space": {k: list(v) for k, v in r.space.items()},
                "sampler": self.sampler or r.sampler, "folds": r.folds if self.folds is None else self.folds,
                "pruning": self.pruning, "overrides": self.overrides}


def suggest(trial, space: dict[str, tuple]) -> dict[str, Any]:
    params = {}
    for name, (kind, *args) in space.items():
        if kind == "log":
            params[name] = trial.suggest_float(name, args[0], args[1], log=True)
        elif kind == "float":
            params[name] = trial.suggest_float(name, args[0], args[1])
        elif kind == "int":
            params[name] = trial.suggest_int(name, args[0], args[1])
        else:
            params[name] = trial.suggest_categorical(name, list(args[0]))
    return params


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS
    if path.is_file():
        before = read_json(path)
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            raise UserError(f"{out} holds a study run with other {', '.join(changed)}: run the same command to "
                            "continue it, or choose another --out")
    else:
        write_json(path, settings)


def tune(config: TuneConfig) -> dict[str, Any]:
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from trainers.loop import train

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.settings()
    _check_settings(out, settings)
    fixed = {**config.overrides, "folds": settings["folds"] or None}
    base = resolve(recipe=config.recipe, flags=fixed)
    monitor = base["monitor"] or "val_accuracy"  # every recipe names its own
    column, mode = MONITORS[monitor]
    # heartbeats and retries are "experimental" in Optuna's terms (stable since 2.8): no warning per run
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = RDBStorage(f"sqlite:///{(out / STUDY).resolve()}", heartbeat_interval=HEARTBEAT_SECONDS,
                         grace_period=GRACE_SECONDS,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
    seed = int(base["seed"])
    sampler = (optuna.samplers.RandomSampler(seed=seed) if settings["sampler"] == "random"
               else optuna.samplers.TPESampler(seed=seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if config.pruning
              else optuna.pruners.NopPruner())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name="tune", sampler=sampler, pruner=pruner,
                                direction="maximize" if mode == "max" else "minimize", load_if_exists=True)

    def objective(trial) -> float:
        params = suggest(trial, config.spec.space)
        run = out / "trials" / f"trial-{trial.number:04d}"
        if run.exists():  # left by an earlier process for this very trial number: ours to replace
            shutil.rmtree(run)
        options = resolve(recipe=config.recipe, flags={**fixed, **params})
        trial.set_user_attr("run", str(run))
        print(f"trial {trial.number}: " + ", ".join(f"{k} {_show(v)}" for k, v in params.items()), flush=True)

        def on_epoch(step: int, value: float) -> None:
            if math.isfinite(value):
                trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{column} {value:.4f} at step {step}")

        result = train(to_config(config.store, str(run), options), progress=False, on_epoch=on_epoch)
        valid = result["valid"]["mean"] if "folds" in result else result["valid"]
        for key in ("accuracy", "roc_auc_macro", "macro_f1", "loss"):  # selection sees validation only
            if isinstance(valid.get(key), float) and math.isfinite(valid[key]):
                trial.set_user_attr(f"valid_{key}", valid[key])
        return float(result["best"])

    def done(states=(TrialState.COMPLETE, TrialState.PRUNED)) -> int:
        return len(study.get_trials(deepcopy=False, states=states))

    def write_results(study_, _trial=None) -> None:
        write_results_files(study_, out, column, base, config)

    if done() < config.trials:
        study.optimize(objective, callbacks=[MaxTrialsCallback(config.trials, states=(TrialState.COMPLETE,
                                                                                       TrialState.PRUNED)),
                                             write_results])
    best = study.best_trial if done((TrialState.COMPLETE,)) else None
    best_test = None if best is None else best_test_line(best)  # read once, after the search
    write_results_files(study, out, column, base, config, best_test=best_test)
    return {"trials": done(), "best_value": None if best is None else best.value,
            "best_trial": None if best is None else best.number, "out": str(out), "best_test": best_test}


def _show(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def best_test_line(best) -> str:
    """The best trial's test result, read once from its run after the search, and said to be that."""
    metrics = read_json(Path(best.user_attrs["run"]) / "metrics.json")
    test = metrics["test"]["mean"] if "folds" in metrics else metrics
    shown = ", ".join(f"{k} {test[k]:.4f}" for k in ("accuracy", "roc_auc_macro", "macro_f1")
                      if isinstance(test.get(k), float) and math.isfinite(test[k]))
    where = "mean over the folds' checkpoints" if "folds" in metrics else "its best checkpoint"
    return (f"trial {best.number} on the test split ({where}): {shown}. Reported once, after the search, and "
            "not used to choose: the other trials' test results are not shown, since picking among them would "
            "make this number optimistic.")


def write_results_files(study, out: Path, column: str, base: dict[str, Any], config: TuneConfig,
                        best_test: str | None = None) -> None:
    """trials.csv, tune.md, tune.png and (once a trial completed) best.json; `best_test`, once the
    search is over: the best trial's test result, which tune.md then gives."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    with atomic_path(out / "trials.csv") as tmp:
        frame.to_csv(tmp, index=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    names = list(config.spec.space)
    extra = "" if column == "val_accuracy" else " valid accuracy |"  # beside another objective
    lines = [f"# Tuning {config.recipe} on {config.store}", "",
             f"Objective: the best {column} of each run ({'mean over folds' if base['folds'] else 'on valid'}), "
             f"{study.direction.name.lower()}d; {len(complete)} complete, "
             f"{sum(t.state == TrialState.PRUNED for t in trials)} pruned, "
             f"{sum(t.state == TrialState.FAIL for t in trials)} failed (a killed trial is retried).", "",
             "Every number in this table and in tune.png is a validation result: the test split plays no part "
             "in the search.", "",
             "| trial | state | " + " | ".join(names) + f" | {column} |{extra} epochs seen | run |",
             "|---:|---|" + "---:|" * len(names) + "---:|" + "---:|" * bool(extra) + "---:|---|"]
    for t in trials:
        value = "—" if t.value is None else f"{t.value:.4f}"
        accuracy = t.user_attrs.get("valid_accuracy")
        lines.append(f"| {t.number}{' **best**' if best is not None and t.number == best.number else ''} | "
                     f"{t.state.name.lower()} | " + " | ".join(_show(t.params.get(n, '—')) for n in names)
                     + f" | {value} |" + (f" {'—' if accuracy is None else f'{accuracy:.4f}'} |" if extra else "")
                     + f" {len(t.intermediate_values)} | {Path(t.user_attrs.get('run', '')).name} |")
    if best is not None:
        options = {**base, **best.params, "folds": None}
        write_json(out / "best.json", {"options": options, "value": best.value, "trial": best.number,
                                       "run": best.user_attrs.get("run"), "objective": column,
                                       "tuned": asdict(config)})
        lines += ["", f"Best: trial {best.number}, {column} {best.value:.4f}; its options are in best.json: "
                      f"`featurestore train STORE --config {out / 'best.json'} --out RUN`.", ""]
        if best_test:
            lines += ["## Test result of the best trial", "", best_test, ""]
    lines += ["![trials](tune.png)", ""]
    write_text(out / "tune.md", "\n".join(lines))
    _plot(trials, out / "tune.png", column, study.direction.name == "MAXIMIZE", config.spec.space, base["folds"])


def _plot(trials, path: Path, column: str, maximize: bool, space: dict[str, tuple], folds: int | None) -> None:
    """Objective per trial, learning curves, and each searched parameter against the objective."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, NullFormatter
    from optuna.trial import TrialState

    names = list(space)
    fig = Figure(figsize=(max(11, 3.6 * len(names)), 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    left, right = top.subplots(1, 2)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    last = [list(t.intermediate_values.values())[-1] if t.intermediate_values else np.nan for t in pruned]
    left.scatter([t.number for t in done], [t.value for t in done], label="complete")
    if pruned:
        left.scatter([t.number for t in pruned], last, marker="x", label="pruned (last value)")
    if done:
        values = np.array([t.value for t in done])
        best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
        left.step([t.number for t in done], best, where="post", label="best so far")
    left.set(xlabel="trial", ylabel=f"{column} (validation)", title="objective per trial")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    for t in trials:
        if t.intermediate_values:
            steps = sorted(t.intermediate_values)
            right.plot(steps, [t.intermediate_values[s] for s in steps], marker=".",
                       linestyle="--" if t.state == TrialState.PRUNED else "-", label=f"trial {t.number}")
    right.set(xlabel=f"epoch (counting on over {folds} folds)" if folds else "epoch", ylabel=f"{column} (validation)",
              title="learning curves (dashed: pruned)")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(trials) <= 12:
        right.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    for ax, name in zip(np.atleast_1d(bottom.subplots(1, len(names))), names):
        kind = space[name][0]
        for group, marker, label, values in ((done, "o", "complete", [t.value for t in done]),
                                             (pruned, "x", "pruned (last value)", last)):
            if group:
                ax.scatter([t.params[name] for t in group if name in t.params],
                           [v for t, v in zip(group, values) if name in t.params], marker=marker, label=label)
        if kind == "choice":
            ax.set_xticks(sorted(space[name][1]))
            ax.margins(x=0.1)
        else:  # the whole searched range, so where the trials fell in it shows
            ax.set_xscale("log" if kind == "log" else "linear")
            ax.set_xlim(space[name][1], space[name][2])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel=name, ylabel=f"{column} (validation)", title=f"{name} against the objective")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
