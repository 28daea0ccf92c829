"""Connecting to Ray: join a running cluster when there is one, start a local one otherwise."""
from __future__ import annotations

import os
from pathlib import Path

import ray

from cluster.logs import LOG_DIR_ENV

# vLLM keeps its engine in the actor's own process so weights can be loaded in place, and a
# modest CPU KV cache leaves room for several engines on a laptop.
WORKER_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "RAY_DEDUP_LOGS": "1",
}


def connect(address: str | None = None, num_cpus: int | None = None, log_dir: Path | None = None) -> str:
    """Join `address` or $RAY_ADDRESS (set by `ray job submit`); with neither, start a local Ray.

    No "auto" discovery: a stray local Ray of another process must not capture the run.
    With `log_dir`, actors' output stays off the console (`log_to_driver=False`: it stays in
    Ray's worker logs) and their library logs go to `log_dir` (cluster/logs.py); an actor's
    error still reaches the driver, as the exception of the call that needed the actor.
    """
    if ray.is_initialized():
        return "existing"
    env: dict = {"env_vars": dict(WORKER_ENV)}
    if log_dir is not None:
        env["env_vars"][LOG_DIR_ENV] = str(Path(log_dir).absolute())
        env["worker_process_setup_hook"] = "cluster.logs.setup_worker"
    quiet = {"log_to_driver": log_dir is None}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=env, **quiet)
        return address
    for attempt in (1, 2):
        try:
            ray.init(runtime_env=env, include_dashboard=False, num_cpus=num_cpus, **quiet)
            return "local"
        except Exception as e:  # a local GCS that starts too slowly on a busy machine
            ray.shutdown()
            if attempt == 2:
                raise RuntimeError(f"could not start a local Ray: {e}") from e
    raise AssertionError("unreachable")
