"""Library logs go to files in runs/<name>/logs/, not to the console.

vLLM, DeepSpeed, Ray, transformers and torch log through Python's `logging` (and `warnings`),
each with a console handler of its own. `route_library_logs(file)` replaces every console
handler of this process (of every logger, also of those a library creates or configures later)
by one handler on `file`, and sends Python warnings there too:

- the driver: logs/driver.log (our own console lines are written there as well, see RunLog);
- each Ray worker: logs/<actor>.log (rollout-0.log, judge-1.log, ...), set up by
  `setup_worker`, Ray's `worker_process_setup_hook` (cluster/runtime.py). What a worker writes
  to stdout/stderr without `logging` (C++ warnings, progress bars) stays in Ray's own worker
  logs; `log_to_driver=False` keeps all of it off the console. An actor's error still reaches
  the console once: through the exception the driver receives.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOG_DIR_ENV = "THOUGHTRL_LOG_DIR"  # where workers write their logs (set in the runtime env)
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
_current: "_LogFile | None" = None


class _LogFile(logging.FileHandler):
    """The process's log file; each record is written once however many loggers hold it."""

    def __init__(self, path: Path):
        super().__init__(str(path), delay=True)
        self.formatter = _FORMAT

    def setFormatter(self, fmt) -> None:
        pass  # a library re-formats "its" handlers (Ray does): this file keeps one format

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_thoughtrl_logged", False):
            return False
        record._thoughtrl_logged = True
        return super().filter(record)


class _WorkerLogFile(_LogFile):
    """logs/<actor>.log, named once the worker knows which actor it hosts (it starts before)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.label = _actor_label()
        super().__init__(log_dir / f"{self.label}.log")

    def emit(self, record: logging.LogRecord) -> None:
        label = _actor_label()
        if label != self.label:
            self.close()
            self.label, self.baseFilename = label, str(self.log_dir / f"{label}.log")
        super().emit(record)


def _actor_label() -> str:
    try:
        import ray
        ctx = ray.get_runtime_context()
        name = ctx.get_actor_name()
        if name:
            return name
        if ctx.get_actor_id():  # an unnamed actor: its class, from the running task's name
            return f"{(ctx.get_task_name() or 'actor').split('.')[0]}-{os.getpid()}"
    except Exception:  # not (yet) an actor
        pass
    return f"worker-{os.getpid()}"


def _is_console(handler: logging.Handler) -> bool:
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and getattr(handler, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))


class _RoutedLogger(logging.Logger):
    """A console handler added to this logger (a library configuring itself) goes to the log file."""

    def addHandler(self, handler: logging.Handler) -> None:
        if _current is not None and _is_console(handler):
            handler = _current
        super().addHandler(handler)


def route_library_logs(handler_or_path: "Path | _LogFile") -> Path:
    """Send this process's library logs and warnings to a file instead of the console (again:
    a second call moves them to the new file)."""
    global _current
    new = handler_or_path if isinstance(handler_or_path, _LogFile) else _LogFile(Path(handler_or_path))
    Path(new.baseFilename).parent.mkdir(parents=True, exist_ok=True)
    old, _current = _current, new
    root = logging.getLogger()
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in (root, *loggers):
        if type(logger) is logging.Logger:
            logger.__class__ = _RoutedLogger  # so that it routes handlers added later, too
        for h in list(logger.handlers):
            if h is old or _is_console(h):
                logger.removeHandler(h)
                if logger is not root:
                    logger.addHandler(new)
    root.addHandler(new)
    root.setLevel(logging.INFO)
    logging.setLoggerClass(_RoutedLogger)
    logging.captureWarnings(True)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' download/load bars
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if old is not None:
        old.close()
    return Path(new.baseFilename)


def current_log_file() -> Path | None:
    """Where this process's library logs go now (None: nowhere routed)."""
    return Path(_current.baseFilename) if _current is not None else None


def setup_worker() -> None:
    """Ray's worker_process_setup_hook: route this worker's library logs to the run's log dir.
    Never raises (a failing hook would stop the worker): without a usable log dir the logs stay
    in Ray's worker logs."""
    log_dir = os.environ.get(LOG_DIR_ENV)
    if not log_dir:
        return
    try:
        route_library_logs(_WorkerLogFile(Path(log_dir)))
    except Exception as e:  # e.g. the run directory is not on a filesystem this node shares
        print(f"thoughtrl: library logs stay in Ray's worker logs ({e})", file=sys.stderr)
