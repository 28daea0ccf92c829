"""LearnerGroup: N Ray actors, each hosting one LearnerRank, driven as one learner.

The actors are an ActorGroup (`cluster.actor_group`, built by the caller) of LearnerRankActor,
so their timeout and error policy is the one every group of the run has: a hung, failed or
dead rank is an error naming it (`learner-<rank>`), the first failure ends the wait at once.
What is particular to a learner sits on top: the rendezvous (a rank joins the process group in
its constructor, so each actor starts empty, rank 0 reports its node IP and a free port, then
all ranks are built together), merging the ranks' stats of a step, and the two ways weights
reach the engines: `export_weights` (rank 0's packed state dict in the object store) and
`send_weights` (rank 0 streams them to the engines over a collective, forming the group again
whenever the engines change). Every call goes to all ranks at once (they run collectives).
"""
from __future__ import annotations

import importlib
import socket
from typing import Any

import ray

from core.weights import nbytes

# How the per-rank stats of one train_step merge into one dict; unlisted keys come from rank 0
# (the rank stats are already all-reduced to global values).
_CONCATENATED = ("sample_keys", "policy_versions", "rewards")
_AVERAGED = ("loss", "clip_frac", "ratio", "kl", "kl_ref", "grad_norm", "tokens_per_s")
_MAXED = ("step_seconds",)
# What a rank trains, by kind: module and class (imported inside the actor: they import deepspeed).
RANK_KINDS = {"policy": ("learner.rank", "LearnerRank"), "prm": ("learner.prm_rank", "PRMRank")}


class LearnerRankActor:
    """The Ray-side host of one LearnerRank (whose module imports deepspeed only in here)."""

    def __init__(self, cpu_threads: int | None = 1):
        self.cpu_threads = cpu_threads
        self.rank = None

    def ready(self) -> bool:
        return True

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def start(self, kind: str = "policy", **kwargs) -> None:
        if self.cpu_threads:  # here, in the thread that trains (methods run beside the health check)
            import torch
            torch.set_num_threads(self.cpu_threads)
        module, name = RANK_KINDS[kind]
        self.rank = getattr(importlib.import_module(module), name)(**kwargs)

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
    """The ranks of `ranks` (an ActorGroup of LearnerRankActor) built as one learner on
    `model_path`; `rank_kwargs` go to every rank of `kind` (`RANK_KINDS`: the policy's
    LearnerRank, or a process reward model's PRMRank). Collectives inside the ranks time out
    with the group's calls (`ranks.timeout_s`). `alongside`: other groups' start-up calls in
    flight, `(group, method, refs)`, awaited together with the ranks' start, so that an actor of
    any group that cannot start ends the wait at once."""

    def __init__(self, ranks, model_path: str, kind: str = "policy", alongside: list = (), **rank_kwargs):
        if kind not in RANK_KINDS:
            raise ValueError(f"unknown learner kind {kind!r}; known: {sorted(RANK_KINDS)}")
        self.ranks, self.num_ranks = ranks, len(ranks)
        self.last_export_bytes = 0
        self._engines: list[str] | None = None  # the engines in rank 0's transfer group, by name
        try:
            addr, port = ranks.call(0, "address")
            ranks.get([actor.start.remote(kind, model_path=str(model_path), rank=rank, world_size=self.num_ranks,
                                          master_addr=addr, master_port=port,
                                          collective_timeout_s=ranks.timeout_s, **rank_kwargs)
                       for rank, actor in enumerate(ranks.actors)], "start", alongside)
        except BaseException:
            self.shutdown()  # no half-started ranks left holding resources
            raise

    def _call_all(self, method: str, *args) -> list:
        return self.ranks.get(self.ranks.call_all("call", method, *args), method)

    def train_step(self, tables_or_refs) -> dict:
        """One optimizer step. Pass one ObjectRef of a list of tables, or a list of table refs
        (a plain list of tables is put in the object store once here)."""
        if not isinstance(tables_or_refs, ray.ObjectRef):
            tables_or_refs = [t if isinstance(t, ray.ObjectRef) else ray.put(t) for t in tables_or_refs]
        return merge_stats(self.ranks.get_all("train_step", tables_or_refs))

    def export_weights(self) -> ray.ObjectRef:
        """Rank 0's packed state dict, left in the object store (fetch it where it is loaded)."""
        sizes, packed = zip(*[a.export_weights.remote() for a in self.ranks.actors])
        self.last_export_bytes = self.ranks.get(list(sizes), "export_weights")[0]
        return packed[0]

    def send_weights(self, engines: list, names: list[str], version: int) -> None:
        """The rollout engines `engines` (actor handles, named `names`) serve the learner's weights
        as `version` once this returns. An error names the engines that failed; what it left
        behind is for the caller to heal (an engine whose transfer did not finish has version
        None). Engines other than the last ones (a replacement, a subset) form a new group."""
        try:
            if names != self._engines:
                self._engines = None
                addr, port = self.ranks.call(0, "address")
                self._call_all("connect_engines", engines, names, addr, port)
                self._engines = list(names)
            self.last_export_bytes = self._call_all("send_weights", version)[0]
        except BaseException:
            self._engines = None  # rank 0 has closed the group
            raise

    def weights_hashes(self) -> list[str]:
        """Each rank's hash of its full weights, in rank order."""
        return self._call_all("weights_hash")

    def weights_hash(self) -> str:
        """The hash of the learner's weights (core.weights.state_hash); ranks that disagree are an error."""
        hashes = self.weights_hashes()
        if len(set(hashes)) != 1:
            raise RuntimeError(f"{self.ranks.name}: ranks hold different weights: {hashes}")
        return hashes[0]

    def save_checkpoint(self, ckpt_dir: str, client_state: dict, keep: int = 2) -> None:
        """A complete checkpoint of every rank (learner/checkpoints.py); the `keep` newest are kept."""
        self._call_all("save_checkpoint", str(ckpt_dir), client_state, keep)

    def load_checkpoint(self, ckpt_dir: str, tag: str | None = None) -> dict:
        """Every rank loads checkpoint `tag` (default: the newest complete one); the driver's state."""
        return self._call_all("load_checkpoint", str(ckpt_dir), tag)[0]

    def save_hf(self, out_dir: str) -> None:
        self._call_all("save_hf", str(out_dir))

    def shutdown(self) -> None:
        self.ranks.shutdown()


def merge_stats(per_rank: list[dict]) -> dict:
    merged = dict(per_rank[0])
    for key in _CONCATENATED:
        merged[key] = [v for s in per_rank for v in s[key]]
    for key in _AVERAGED:
        merged[key] = sum(s[key] for s in per_rank) / len(per_rank)
    for key in _MAXED:
        merged[key] = max(s[key] for s in per_rank)
    return merged
