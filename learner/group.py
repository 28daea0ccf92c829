"""LearnerGroup: N Ray actors, each hosting one LearnerRank, driven as one learner.

A rank joins the process group in its constructor, so it needs the master address first: each
actor starts empty, rank 0's actor reports its node IP and a free port, then all ranks are built
together. Every call goes to all ranks at once (they run collectives) and is awaited with a
timeout, so a hung or dead rank becomes a clear error naming it instead of a silent hang.
"""
from __future__ import annotations

import socket
from typing import Any

import ray

from core.weights import nbytes

# How the per-rank stats of one train_step merge into one dict; unlisted keys come from rank 0
# (the rank stats are already all-reduced to global values).
_CONCATENATED = ("sample_keys", "policy_versions", "rewards")
_AVERAGED = ("loss", "clip_frac", "ratio", "kl", "kl_ref", "grad_norm", "tokens_per_s")
_MAXED = ("step_seconds",)


class LearnerError(RuntimeError):
    """A learner rank failed, died or did not answer in time."""


class LearnerRankActor:
    """The Ray-side host of one LearnerRank (whose module imports deepspeed only in here)."""

    def __init__(self, cpu_threads: int | None = 1):
        if cpu_threads:
            import torch
            torch.set_num_threads(cpu_threads)
        self.rank = None

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def start(self, **kwargs) -> None:
        from learner.rank import LearnerRank
        self.rank = LearnerRank(**kwargs)

    def train_step(self, tables_or_refs) -> dict:
        return self.rank.train_step(_resolve_tables(tables_or_refs))

    @ray.method(num_returns=2)
    def export_weights(self) -> tuple[int, Any]:
        """(bytes, packed) so the caller can check success without fetching the weights."""
        packed = self.rank.export_weights()
        return (nbytes(packed) if packed is not None else 0), packed

    def call(self, method: str, *args) -> Any:
        return getattr(self.rank, method)(*args)


def _resolve_tables(tables_or_refs) -> list:
    """A list of tables, or of ObjectRefs of tables (refs inside a list are not resolved by Ray)."""
    if isinstance(tables_or_refs, ray.ObjectRef):
        tables_or_refs = ray.get(tables_or_refs)
    items = tables_or_refs if isinstance(tables_or_refs, list) else [tables_or_refs]
    fetched = iter(ray.get([t for t in items if isinstance(t, ray.ObjectRef)]))
    return [next(fetched) if isinstance(t, ray.ObjectRef) else t for t in items]


class LearnerGroup:
    """`num_ranks` data-parallel LearnerRanks; `rank_kwargs` go to every LearnerRank.

    Resources per rank: `num_cpus_per_rank` (0 by default, so a small machine never waits for
    CPUs held by rollout actors) and `num_gpus_per_rank` (1 on a GPU cluster). `actor_options`
    go to every rank's `.options(...)`, e.g. a placement-group scheduling strategy.
    """

    def __init__(
        self,
        num_ranks: int,
        model_path: str,
        num_cpus_per_rank: float = 0,
        num_gpus_per_rank: float = 0,
        cpu_threads: int | None = 1,
        start_timeout_s: float = 300.0,
        call_timeout_s: float = 600.0,
        name: str = "learner",
        actor_options: dict | None = None,
        **rank_kwargs,
    ):
        if num_ranks < 1:
            raise ValueError(f"num_ranks must be >= 1, got {num_ranks}")
        self.name, self.num_ranks, self.call_timeout_s = name, num_ranks, call_timeout_s
        self.last_export_bytes = 0
        actor_cls = ray.remote(num_cpus=num_cpus_per_rank, num_gpus=num_gpus_per_rank)(LearnerRankActor)
        actor_cls = actor_cls.options(**(actor_options or {}))
        self.actors = [actor_cls.remote(cpu_threads) for _ in range(num_ranks)]
        try:
            addr, port = self._gather([self.actors[0].address.remote()], "address", start_timeout_s)[0]
            starts = [
                actor.start.remote(model_path=str(model_path), rank=rank, world_size=num_ranks,
                                   master_addr=addr, master_port=port, **rank_kwargs)
                for rank, actor in enumerate(self.actors)
            ]
            self._gather(starts, "start", start_timeout_s)
        except BaseException:
            self.shutdown()  # no half-started ranks left holding resources
            raise

    def _gather(self, refs: list, what: str, timeout_s: float | None = None) -> list:
        timeout_s = self.call_timeout_s if timeout_s is None else timeout_s
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s, fetch_local=False)
        if pending:
            ranks = [refs.index(r) for r in pending]
            raise LearnerError(f"{self.name}: rank(s) {ranks} of {self.num_ranks} did not finish "
                               f"{what} within {timeout_s:g}s")
        out = []
        for rank, ref in enumerate(refs):
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayError as err:
                # A task error carries the rank's own exception; show that, not Ray's wrapper.
                cause = getattr(err, "cause", None) or err
                raise LearnerError(f"{self.name}: rank {rank} of {self.num_ranks} failed in {what}: "
                                   f"{type(cause).__name__}: {cause}") from err
        return out

    def _call_all(self, method: str, *args) -> list:
        return self._gather([a.call.remote(method, *args) for a in self.actors], method)

    def train_step(self, tables_or_refs) -> dict:
        """One optimizer step. Pass one ObjectRef of a list of tables, or a list of table refs
        (a plain list of tables is put in the object store once here)."""
        if not isinstance(tables_or_refs, ray.ObjectRef):
            tables_or_refs = [t if isinstance(t, ray.ObjectRef) else ray.put(t) for t in tables_or_refs]
        stats = self._gather([a.train_step.remote(tables_or_refs) for a in self.actors], "train_step")
        return merge_stats(stats)

    def export_weights(self) -> ray.ObjectRef:
        """Rank 0's packed state dict, left in the object store (fetch it where it is loaded)."""
        sizes, packed = zip(*[a.export_weights.remote() for a in self.actors])
        self.last_export_bytes = self._gather(list(sizes), "export_weights")[0]
        return packed[0]

    def weights_hashes(self) -> list[str]:
        """Each rank's hash of its full weights, in rank order."""
        return self._call_all("weights_hash")

    def weights_hash(self) -> str:
        """The hash of the learner's weights (core.weights.state_hash); ranks that disagree are an error."""
        hashes = self.weights_hashes()
        if len(set(hashes)) != 1:
            raise LearnerError(f"{self.name}: ranks hold different weights: {hashes}")
        return hashes[0]

    def save_checkpoint(self, ckpt_dir: str, client_state: dict) -> None:
        self._call_all("save_checkpoint", str(ckpt_dir), client_state)

    def load_checkpoint(self, ckpt_dir: str) -> dict:
        return self._call_all("load_checkpoint", str(ckpt_dir))[0]

    def save_hf(self, out_dir: str) -> None:
        self._call_all("save_hf", str(out_dir))

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def merge_stats(per_rank: list[dict]) -> dict:
    merged = dict(per_rank[0])
    for key in _CONCATENATED:
        merged[key] = [v for s in per_rank for v in s[key]]
    for key in _AVERAGED:
        merged[key] = sum(s[key] for s in per_rank) / len(per_rank)
    for key in _MAXED:
        merged[key] = max(s[key] for s in per_rank)
    return merged
