"""``clipbert-emo tune``: hyperparameter search with Optuna, one fine-tuning run per trial.

A study lives in a database (``--storage``, an SQLAlchemy URL: ``sqlite:///study.db`` on one machine,
``postgresql://...`` or ``mysql://...`` for workers on several), so any number of worker processes share it
and a killed one loses only its running trial, which comes back:

- each trial runs in its own folder, ``OUT/trial_NNNN``, with its parameters as config overrides; the objective
  is the recipe's selection metric on the validation split (train.select_metric, or the task kind's), in the
  direction the task kind gives it; the pruner reads each epoch's value through a run observer;
- a worker records a heartbeat for its running trial, and its host and process id. A trial left RUNNING by a
  worker that died (its process is gone, on this machine; or its heartbeat stopped, on any machine) is marked
  FAIL and queued again with the same parameters; the retry continues the killed run from its folder's last/
  (exactly where the engine saved it) rather than starting over;
- ``trials`` counts the study's COMPLETE and PRUNED trials, whoever ran them: a worker starts a trial while the
  count plus the trials running elsewhere is short of it, waits while the others' running trials would reach
  it (one of them may yet fail and come back), and stops when it is reached. Two workers that count at the
  same instant may start one trial each where one was missing: a study can end with up to (workers - 1)
  trials more than asked, never fewer.

The report (tune_report.py: the table of trials as CSV and JSON, Optuna's plots, ``best.yaml``) is written
by every worker that finishes, from the whole study.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from ..checkpoint import TRAINING_STATE
from ..config import ConfigError, UserError, check_output_folder, load_config
from ..config.atomic import atomic_write_text
from ..tasks import get_task
from .observers import RunObserver
from .resume import DEEPSPEED_STATE
from .tune_space import SearchParam, check_space, load_space, param_overrides, space_differences

__all__ = ["TuneSettings", "run_tune", "PruningObserver", "open_study", "open_storage", "trial_dir", "DIRECTIONS",
           "PRUNERS", "SAMPLERS"]

logger = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("auto", "maximize", "minimize")
SAMPLERS = ("tpe", "random")
MAX_RETRIES = 3  # a trial whose worker keeps dying (killed for memory, say) is not queued forever
STUDY_RECORD = "study.json"  # in OUT: which study the trial folders belong to


@dataclass
class TuneSettings:
    """What ``clipbert-emo tune`` is asked: the study, where it lives, what it searches, how trials are pruned."""

    space: str  # the search space YAML (tune_space.py)
    study: str  # the study's name in the storage
    trials: int  # COMPLETE + PRUNED trials the study should hold when this worker stops
    storage: str = ""  # SQLAlchemy URL; "" = sqlite:///OUT/study.db
    config: str | None = None  # the tuned config: a path or a shipped config's name
    out: str = ""  # the trial folders, the table, the plots, best.yaml; "" = runs/tune/<study>
    overrides: list[str] = field(default_factory=list)  # fixed for every trial, under the searched parameters
    preset: str | None = None
    pruner: str = "median"  # median | hyperband | none
    pruner_startup_trials: int = 3  # median: finished trials before any trial is pruned
    pruner_warmup_epochs: int = 0  # median: epochs of a trial before it may be pruned
    direction: str = "auto"  # auto = the selection metric's (maximize F1/accuracy, minimize mae/loss)
    sampler: str = "tpe"  # tpe | random
    seed: int | None = None  # the sampler's seed (give several workers different seeds, or none)
    heartbeat_seconds: int = 60  # a running trial's heartbeat; it is stale (worker dead) after twice as long
    max_failures: int = 3  # this worker stops after so many failed trials in a row (a broken setup, not bad luck)
    test_split: bool = False  # also score each trial on the test split (off: the search never sees it)
    progress: bool = True
    poll_seconds: float = 5.0  # how often a worker waiting for others' trials looks at the study

    def out_dir(self) -> Path:
        return Path(self.out or Path("runs") / "tune" / self.study)

    def storage_url(self) -> str:
        if not self.storage:
            return f"sqlite:///{self.out_dir() / 'study.db'}"
        if "://" not in self.storage:
            if self.storage.endswith(".db"):  # a plain file name: the SQLite database it names
                return f"sqlite:///{self.storage}"
            raise ConfigError(f"--storage {self.storage!r}: expected a database URL such as sqlite:///study.db or "
                              "postgresql://user:password@host/db")
        return self.storage


def trial_dir(out: Path, number: int) -> Path:
    return out / f"trial_{number:04d}"


class PruningObserver(RunObserver):
    """Reports each epoch's validation value to the trial and stops the run when the pruner says so. The run's
    last/ is saved before on_epoch, so a pruned run is an ordinary stopped run (its folder stays readable)."""

    def __init__(self, trial, metric_key: str):
        self.trial, self.metric_key = trial, metric_key

    def on_epoch(self, engine, epoch: int, entry: dict) -> None:
        import optuna

        value = entry.get(self.metric_key)
        if value is None:
            return
        with warnings.catch_warnings():  # a resumed retry may report an epoch its killed run already reported
            warnings.simplefilter("ignore", UserWarning)
            self.trial.report(float(value), epoch)
        if engine is not None and epoch >= engine.cfg.train.epochs:
            return  # the run is done: stopping it now would only record its last epoch instead of its best
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.metric_key}={value:.4g})")


# ---------------------------------------------------------------------------------------------
# Which worker runs a trial, and what happens to the trials of one that died


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused process id from the
    process that held it; None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _machine() -> str:
    """This machine, as precise as it can tell: the host name and this boot (process ids mean nothing after a
    reboot or on another machine)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _worker_attrs() -> dict:
    pid = os.getpid()
    return {"worker_machine": _machine(), "worker_pid": pid, "worker_started": _start_time(pid) or ""}


def _worker_is_dead(attrs: dict) -> bool:
    """Whether the worker named by a RUNNING trial's attributes is known to be gone: it ran on this machine and its
    process no longer exists (or is another process under the same id). Unknown (another machine, no attributes)
    = not known dead: the heartbeat decides. Asked between trials, when this process runs none."""
    pid = attrs.get("worker_pid")
    if attrs.get("worker_machine") != _machine() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True  # this process runs no trial now: an earlier process with this id (or this one, interrupted) did
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = _start_time(pid)
    return bool(attrs.get("worker_started")) and started is not None and started != attrs["worker_started"]


def _retry(study, trial) -> None:
    """Queue a trial whose worker died again, with its parameters, folder and reported epochs: the retry resumes
    the run from the folder's last/ and the pruner still sees the epochs before the kill. Used for the heartbeat's
    stale trials (Optuna calls it) and for the trials of dead processes found on this machine."""
    import optuna

    retries = int(trial.user_attrs.get("retries", 0)) + 1
    if retries > MAX_RETRIES:
        logger.warning("trial %d: its worker stopped %d times; not retried again", trial.number, retries)
        return
    attrs = {"run_dir": trial.user_attrs.get("run_dir"), "retries": retries,
             "retry_of": trial.user_attrs.get("retry_of", trial.number), "retried_from": trial.number}
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: v for k, v in attrs.items() if v is not None}, intermediate_values=trial.intermediate_values))


def _recover_dead_workers(study, storage, heartbeat_seconds: int) -> None:
    """FAIL and re-queue the RUNNING trials of dead workers: those of this machine at once, the others once their
    heartbeat is stale (optuna.storages.fail_stale_trials, which calls _retry). Called between trials, when this
    process runs none."""
    import optuna
    from optuna.trial import TrialState

    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A worker records its heartbeat, then who it is, within moments of taking a trial; one that has done
        # neither long after died in between, and no heartbeat will ever go stale for it.
        unclaimed = ("worker_pid" not in t.user_attrs and t.datetime_start is not None
                     and (now - t.datetime_start).total_seconds() > 4 * heartbeat_seconds + 60)
        if not (unclaimed or _worker_is_dead(t.user_attrs)):
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                logger.warning("trial %d: its worker (process %s) is gone; queued again", t.number,
                               t.user_attrs.get("worker_pid"))
                _retry(study, t)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@contextmanager
def _heartbeat(storage, trial_id: int, seconds: int):
    """Record the trial's heartbeat now and every ``seconds`` while the block runs (a thread)."""
    storage.record_heartbeat(trial_id)  # before any work: a worker killed in its first minute is seen as well
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(seconds):
            try:
                storage.record_heartbeat(trial_id)
            except Exception as e:  # a busy or briefly unreachable database: the next beat tries again
                logger.warning("heartbeat of trial id %d not recorded: %s", trial_id, e)

    thread = threading.Thread(target=beat, name=f"tune-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ---------------------------------------------------------------------------------------------
# The study


def open_storage(url: str, heartbeat_seconds: int):
    """Optuna's RDBStorage for ``url`` with the heartbeat on; SQLite waits for a lock instead of failing at once
    (several workers write the same file), and a first-time schema creation that races another worker is retried."""
    import optuna
    import sqlalchemy

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            check_output_folder(Path(path).parent, "--storage folder")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 120}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_seconds,
                                                  grace_period=2 * heartbeat_seconds,
                                                  heartbeat_stale_trial_callback=_retry)
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as e:
                # Workers started together on a new database both create its tables and stamp its schema version:
                # the loser meets a lock or the winner's row, and finds the schema complete when it tries again.
                if attempt == 4:
                    raise UserError(f"--storage {_shown_url(url)}: cannot open the database: {e.orig}") from None
                time.sleep(0.5 + attempt)
            except (sqlalchemy.exc.ArgumentError, ImportError, ModuleNotFoundError) as e:
                raise UserError(f"--storage {_shown_url(url)}: {e} (SQLite needs nothing more; PostgreSQL needs "
                                "psycopg2, MySQL PyMySQL)") from None


def _shown_url(url: str) -> str:
    """The URL without its password, for messages and study.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _direction(settings: TuneSettings, base_cfg) -> tuple[str, str]:
    """(the selection metric, "maximize" or "minimize"); --direction may only say what the metric says."""
    task = get_task(base_cfg.data.task)
    metric = base_cfg.train.select_metric or task.select_metric
    natural = "minimize" if task.lower_is_better(metric) else "maximize"
    if settings.direction not in DIRECTIONS:
        raise ConfigError(f"--direction {settings.direction!r}: expected one of {', '.join(DIRECTIONS)}")
    if settings.direction not in ("auto", natural):
        raise ConfigError(f"--direction {settings.direction}: the selection metric {metric} is one to {natural} (the "
                          "run keeps its best epoch that way); use --direction auto, or choose another "
                          "train.select_metric")
    return metric, natural


def _pruner(settings: TuneSettings, epochs: int):
    import optuna

    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials,
                                           n_warmup_steps=settings.pruner_warmup_epochs)
    if settings.pruner == "hyperband":  # an epoch is the resource; the longest trial trains train.epochs
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner {settings.pruner!r}: expected one of {', '.join(PRUNERS)}")


def _sampler(settings: TuneSettings):
    import optuna

    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=settings.seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    raise ConfigError(f"--sampler {settings.sampler!r}: expected one of {', '.join(SAMPLERS)}")


def _max_epochs(params: Sequence[SearchParam], base_cfg) -> int:
    for p in params:
        if p.key == "train.epochs":
            return int(max(p.choices) if p.kind == "categorical" else p.high)
    return base_cfg.train.epochs


def _record_folder(out: Path, study: str, url: str) -> None:
    """OUT belongs to one study: trial folders are numbered per study, and a second study's trial_0000 would land
    on the first one's."""
    import json

    record = out / STUDY_RECORD
    mine = {"study": study, "storage": _shown_url(url)}
    if record.exists():
        try:
            held = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            held = None
        if isinstance(held, dict) and held.get("study") != study:
            raise UserError(f"--out {out} holds the trials of study {held.get('study')!r} ({held.get('storage')}); "
                            f"give study {study!r} its own --out folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(mine, indent=2) + "\n")


def open_study(settings: TuneSettings, params: Sequence[SearchParam], base_cfg, pruner=None, sampler=None):
    """(study, storage, selection metric): the study created or joined; a worker whose search space differs from
    the one the study was started with is refused (its trials would not be comparable)."""
    import optuna

    metric, direction = _direction(settings, base_cfg)
    url = settings.storage_url()
    storage = open_storage(url, settings.heartbeat_seconds)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # this module reports each trial itself
    study = optuna.create_study(storage=storage, study_name=settings.study, direction=direction,
                                load_if_exists=True, pruner=pruner or _pruner(settings, _max_epochs(params, base_cfg)),
                                sampler=sampler or _sampler(settings))
    if study.direction.name.lower() != direction:
        raise UserError(f"study {settings.study!r} in {_shown_url(url)} was started to {study.direction.name.lower()}, "
                        f"but {metric} is to {direction}: give this search another --study name")
    space = {p.key: p.as_dict() for p in params}
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", space)
        study.set_user_attr("select_metric", metric)
        study.set_user_attr("config", settings.config or "")
    elif space_differences(recorded, params):
        raise UserError(f"{settings.space}: differs from the space study {settings.study!r} was started with, at "
                        f"{', '.join(space_differences(recorded, params))}; run this space as another --study")
    return study, storage, metric


# ---------------------------------------------------------------------------------------------
# Running trials


def _trial_config(settings: TuneSettings, run_dir: Path, params: dict, resume: bool, overwrite: bool):
    extra = [f"train.output_dir={run_dir}"] + (["train.resume=true"] if resume else []) + \
            (["train.overwrite=true"] if overwrite else [])
    if not settings.test_split:
        extra.append("data.test_manifest=")  # model selection reads the validation split only
    return load_config(settings.config, [*settings.overrides, *param_overrides(params), *extra],
                       preset=settings.preset)


def _run_trial(settings: TuneSettings, trial, params_space: Sequence[SearchParam], metric: str,
               observers: Sequence[RunObserver]) -> dict:
    """Fine-tune with the trial's parameters in its folder (continuing a killed run there); returns the metrics."""
    from .finetune import finetune

    params = {p.key: p.suggest(trial) for p in params_space}
    run_dir = Path(trial.user_attrs.get("run_dir") or trial_dir(settings.out_dir(), trial.number))
    trial.set_user_attr("run_dir", str(run_dir))
    resume = (run_dir / "last" / TRAINING_STATE).exists()
    # A run killed after its first checkpoint/ but before its first last/ cannot be resumed: it starts over.
    overwrite = not resume and (run_dir / "checkpoint").exists()
    if resume:
        logger.warning("trial %d: continuing the killed run in %s", trial.number, run_dir)
    cfg = _trial_config(settings, run_dir, params, resume, overwrite)
    return finetune(cfg, progress=settings.progress, observers=[PruningObserver(trial, "val_" + metric), *observers])


def _drop_resume_state(run_dir: Path) -> None:
    """A finished trial is never resumed: its last/ (a second copy of the weights, plus the optimizer) goes."""
    for name in ("last", DEEPSPEED_STATE):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _next_trial(study, storage, target: int, poll: float, heartbeat_seconds: int, bar):
    """The next trial to run (a queued retry first), or None once the study holds ``target`` finished trials; waits
    while the trials running elsewhere would reach ``target``."""
    from optuna.trial import TrialState

    said = False
    while True:
        _recover_dead_workers(study, storage, heartbeat_seconds)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        done = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
        bar.n = min(done, target)
        bar.refresh()
        if done >= target:
            return None
        # A queued retry is not a reason to start one more: it is run (ask() takes it first) when a trial is due.
        if done + states.count(TrialState.RUNNING) < target:
            with warnings.catch_warnings():  # the heartbeat Optuna's optimize() would run, _heartbeat runs here
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                return study.ask()
        if not said:
            tqdm.write(f"waiting for the {states.count(TrialState.RUNNING)} trial(s) other workers are running")
            said = True
        time.sleep(poll)


def _run_and_tell(settings: TuneSettings, study, storage, trial, params: Sequence[SearchParam], metric: str,
                  observers: Sequence[RunObserver], failures: int) -> int:
    """Run one trial and tell the study how it ended; returns the count of failed trials in a row."""
    import optuna
    from optuna.trial import TrialState

    start = time.time()
    try:
        with _heartbeat(storage, trial._trial_id, settings.heartbeat_seconds):
            for key, value in _worker_attrs().items():
                trial.set_user_attr(key, value)
            metrics = _run_trial(settings, trial, params, metric, observers)
    except optuna.TrialPruned as e:
        trial.set_user_attr("note", str(e))
        trial.set_user_attr("seconds", round(time.time() - start, 1))
        study.tell(trial, state=TrialState.PRUNED)
        _drop_resume_state(Path(trial.user_attrs["run_dir"]))
        tqdm.write(f"trial {trial.number}: {e}")
        return 0
    except (KeyboardInterrupt, SystemExit):
        # Stopped by hand: the trial goes back in the queue and continues from its last/ next time.
        trial.set_user_attr("note", "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        _retry(study, storage.get_trial(trial._trial_id))
        raise
    except optuna.exceptions.UpdateFinishedTrialError:
        raise  # taken over by another worker: run_tune says so
    except Exception as e:
        trial.set_user_attr("note", f"error: {type(e).__name__}: {e}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        if isinstance(e, UserError):
            tqdm.write(f"trial {trial.number} failed: {e}")
        else:  # not a user's mistake: the traceback is what finds the bug
            logger.warning("trial %d failed", trial.number, exc_info=e)
        if failures + 1 >= settings.max_failures:
            raise UserError(f"{failures + 1} trials in a row failed, the last one (trial {trial.number}) with: "
                            f"{type(e).__name__}: {e}") from e
        return failures + 1
    value = metrics["best_val_score"]
    if value is None:
        raise ConfigError("the run reported no validation score: tune needs a validation split")
    trial.set_user_attr("best_epoch", metrics["best_epoch"])
    trial.set_user_attr("seconds", round(time.time() - start, 1))
    study.tell(trial, value)
    _drop_resume_state(Path(trial.user_attrs["run_dir"]))
    tqdm.write(f"trial {trial.number}: {metric} {value:.4f} (best epoch {metrics['best_epoch']}) {trial.params}")
    return 0


def run_tune(settings: TuneSettings, pruner=None, sampler=None, observers: Sequence[RunObserver] = ()) -> dict:
    """Run trials of the study until it holds ``settings.trials`` COMPLETE + PRUNED trials, then write the report.

    ``pruner``/``sampler``: Optuna objects replacing the ones ``settings`` names; ``observers``: more run observers
    for every trial (tracking). Returns the report (tune_report.write_report): rows, best trial, files written."""
    import optuna

    from .tune_report import write_report

    if settings.trials < 0:
        raise ConfigError(f"--trials must be >= 0, got {settings.trials}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Every rank of a launch would be a worker of its own, each running its own trials on one GPU of a process
        # group the others never join.
        raise UserError("tune runs each trial in its worker's own process: start one worker per GPU "
                        "(CUDA_VISIBLE_DEVICES=0 clipbert-emo tune ..., CUDA_VISIBLE_DEVICES=1 ...) instead of "
                        "launching it with accelerate launch or torchrun")
    params = load_space(settings.space)
    base_cfg = load_config(settings.config, settings.overrides, preset=settings.preset)
    if base_cfg.data.format == "manifest" and not base_cfg.data.val_manifest:
        raise ConfigError("tune scores each trial on the validation split, and the config has none: set "
                          "data.val_manifest")
    check_space(params, settings.space, settings.config, settings.overrides, settings.preset)
    out = check_output_folder(settings.out_dir(), "--out")
    study, storage, metric = open_study(settings, params, base_cfg, pruner, sampler)
    _record_folder(out, settings.study, settings.storage_url())
    failures = 0
    bar = tqdm(total=settings.trials, desc=f"tune {settings.study}", unit="trial", disable=not settings.progress)
    try:
        while (trial := _next_trial(study, storage, settings.trials, settings.poll_seconds,
                                         settings.heartbeat_seconds, bar)) is not None:
            try:
                failures = _run_and_tell(settings, study, storage, trial, params, metric, observers, failures)
            except optuna.exceptions.UpdateFinishedTrialError:
                # Another worker failed this trial (its heartbeat went unrecorded past the grace period: a suspended
                # process, a database out of reach) and queued it again; the retry resumes the same run exactly, so
                # what this worker trained is not lost, only its result is not this worker's to tell.
                tqdm.write(f"trial {trial.number}: taken over by another worker after a missed heartbeat; left to it")
    finally:
        bar.close()
    return write_report(study, settings, params, metric,
                        lambda run_dir, p: _trial_config(settings, run_dir, p, resume=False, overwrite=False),
                        _shown_url(settings.storage_url()))
