"""Moving prompts through rollout → judge → buffer by reference, surviving dead actors.

`submit` splits a batch of prompts evenly over the N rollout actors, one `generate` call each
(an engine is fastest with all its sequences in one batch). Each chunk's groups are then judged
in ceil(M / N) calls, dealt round-robin over the M judges: the fewest and largest judge calls
(a judge takes a whole call's samples through `judge_batch`, one batch for a model-backed
judge) that still give every judge work in every batch. A judge call receives the rollout
table as an ObjectRef (Ray resolves it inside the judge, not here) with the group ids it
judges; its scored table goes to the buffer still as a reference. The driver keeps only small
summaries.

A judge call whose rollout or judge actor died is re-issued after the actor is replaced (a new
rollout actor first receives the current weights, then generates its chunk again). So is a call
whose rollout or scored table was lost (a node gone with its object store: the chunk is
generated again). Group ids travel with the prompts, so a re-issued group is the same group,
and only the calls that failed are re-issued: the buffer sees each group once, and only after
its judge finished and its experience exists (cluster/buffer.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypeVar

import ray

from cluster.actor_group import ActorDied, ActorError, ActorGroup, get
from cluster.timeline import Timeline
from core.config import Config

T = TypeVar("T")


@dataclass
class JudgeCall:
    """The groups one judge scores out of one rollout chunk, and where its results are."""
    group_ids: list[str]
    judge_index: int
    judge: str = ""  # the judge actor the call went to (a replacement has another name)
    table: "ray.ObjectRef | None" = None  # the rollout table it judges
    summary: "ray.ObjectRef | None" = None
    added: "ray.ObjectRef | None" = None
    result: dict | None = None  # the summary, once collected
    attempts: int = 0


@dataclass
class Work:
    """One chunk of prompts on one rollout actor, and its judge calls."""
    step: int
    prompts: list[dict]
    n: int
    temperature: float
    seed: int
    to_buffer: bool
    rollout_index: int
    calls: list[JudgeCall] = field(default_factory=list)
    table: "ray.ObjectRef | None" = None
    engine: str = ""  # the rollout actor that generated `table` (a replacement has another name)

    @property
    def batch(self) -> int | str:
        """The training batch this work is for, or "eval"."""
        return self.step if self.to_buffer else "eval"


@dataclass
class Batch:
    step: int
    works: list[Work] = field(default_factory=list)
    stream_state: dict = field(default_factory=dict)  # prompt stream position before this batch


@dataclass
class Weights:
    """The newest weights the engines should serve (a replaced engine is brought up to them):
    `send(indices, version)` makes the rollout engines at `indices` serve them as `version`."""
    send: Callable[[list[int], int], None] | None = None
    version: int = 0


def split_evenly(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(items[start:end])
        start = end
    return out


def judge_pieces(chunks: list[list], num_judges: int) -> list[list[list]]:
    """Each non-empty chunk split into ceil(num_judges / chunks) pieces (empty pieces dropped):
    with at least num_judges items in all, there are at least num_judges pieces."""
    per_chunk = -(-num_judges // max(1, sum(1 for c in chunks if c)))
    return [[p for p in split_evenly(c, per_chunk) if p] for c in chunks]


def lost_object(err: BaseException) -> bool:
    """Whether `err` is, or was caused by, an object that no node holds any more."""
    todo, seen = [err], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ray.exceptions.ObjectLostError):
            return True
        todo += [e.__cause__, getattr(e, "cause", None) if isinstance(getattr(e, "cause", None), BaseException) else None]
    return False


class Pipeline:
    def __init__(self, cfg: Config, rollout: ActorGroup, judges: ActorGroup, buffer, weights: Weights,
                 log=print, max_attempts: int = 3):
        self.cfg, self.rollout, self.judges, self.buffer = cfg, rollout, judges, buffer
        self.weights, self.log, self.max_attempts = weights, log, max_attempts
        self.restarts = {rollout.name: 0, judges.name: 0}
        self.timeline = Timeline()
        self._grader_timeouts: dict[str, int] = {}  # per judge actor, as its last summary said

    def submit(self, step: int, prompts: list[dict], n: int | None = None, temperature: float | None = None,
               to_buffer: bool = True) -> Batch:
        r = self.cfg.rollout
        batch = Batch(step)
        chunks = split_evenly(prompts, len(self.rollout))
        for i, (chunk, pieces) in enumerate(zip(chunks, judge_pieces(chunks, len(self.judges)))):
            if not chunk:
                continue
            seed = (self.cfg.seed * 1_000_003 + step * 1_009 + i) % (2**31)
            work = Work(step, chunk, n or r.samples_per_prompt,
                        r.temperature if temperature is None else temperature, seed, to_buffer, i)
            work.calls = [JudgeCall([p["group_id"] for p in piece], self.judges.next_index()) for piece in pieces]
            self._generate(work)
            for call in work.calls:
                self._judge(work, call)
            batch.works.append(work)
        return batch

    def _generate(self, w: Work) -> None:
        w.engine = self.rollout.actor_name(w.rollout_index)
        w.table = self.rollout.actors[w.rollout_index].generate.remote(
            w.prompts, n=w.n, max_tokens=self.cfg.rollout.max_new_tokens, temperature=w.temperature,
            top_p=self.cfg.rollout.top_p, seed=w.seed)
        self.timeline.call("rollout", w.engine, w.batch, w.table)

    def _judge(self, w: Work, call: JudgeCall) -> None:
        call.attempts += 1
        judge = self.judges.actors[call.judge_index]
        call.judge, call.table = self.judges.actor_name(call.judge_index), w.table
        call.summary, scored = judge.score.options(num_returns=2).remote(w.table, call.group_ids)
        call.added = self.buffer.add.remote(call.summary, [scored]) if w.to_buffer else None

    def collect(self, batch: Batch) -> list[dict]:
        """Block until every judge call of the batch is done (and in the buffer); returns the
        calls' summaries."""
        timeout = self.cfg.trainer.call_timeout_s
        for w in batch.works:
            for call in w.calls:
                while call.result is None:
                    what = f"step {w.step} ({w.engine} → {call.judge})"
                    try:
                        if call.added is not None:
                            get(call.added, timeout, f"{what}: buffer.add")
                        call.result = get(call.summary, timeout, what)
                        self.timeline.span("judge", call.judge, w.batch, call.result["started"], call.result["ended"])
                        self._grader_timeouts[call.judge] = call.result["grader_timeouts"]
                    except ActorError as failed:
                        if not isinstance(failed, ActorDied) and not lost_object(failed):
                            raise
                        if call.attempts >= self.max_attempts:
                            raise ActorError(f"{what}: gave up after {call.attempts} attempts") from failed
                        self.log(f"{failed}; replacing dead actors and re-issuing {len(call.group_ids)} groups")
                        self.heal()
                        if self.rollout.actor_name(w.rollout_index) != w.engine or \
                                (lost_object(failed) and call.table is w.table):
                            self._generate(w)  # the table is gone, or its engine (and maybe the table) is
                        self._judge(w, call)
        return [call.result for w in batch.works for call in w.calls]

    def grader_timeouts(self) -> int:
        """Answers whose grading hit the time limit, over every judge actor of the run so far."""
        return sum(self._grader_timeouts.values())

    def heal(self) -> None:
        """Replace dead rollout/judge actors; bring every engine to the current weights. An actor
        that dies while this runs (checked alive, then gone before its engine's version is read)
        is healed in the next round."""
        self._retry_after_death(self._heal_once, "another actor died while replacing, replacing again")

    def _heal_once(self) -> None:
        broken = {i: "is gone" for i in self.rollout.dead_indices()}
        self._replace(self.judges, {i: "is gone" for i in self.judges.dead_indices()})
        if self.weights.send is None:
            self._replace(self.rollout, broken)
            return
        versions = {i: self.rollout.call(i, "version") for i in range(len(self.rollout)) if i not in broken}
        # A transfer stopped midway left an engine part old, part new: it is replaced as if dead.
        broken |= {i: "holds incomplete weights" for i, v in versions.items() if v is None}
        self._replace(self.rollout, broken)
        versions |= {i: 0 for i in broken}
        stale = [i for i, v in sorted(versions.items()) if v != self.weights.version]
        if stale:
            self.weights.send(stale, self.weights.version)

    def _replace(self, group: ActorGroup, why: dict[int, str]) -> None:
        """Replace the actors `why` names (index → what is wrong with it), all at once."""
        if not why:
            return
        for i in sorted(why):
            self.log(f"{group.actor_name(i)} {why[i]}; starting a replacement")
        group.replace(list(why))
        self.restarts[group.name] += len(why)

    def ask_all(self, group: ActorGroup, method: str, *args) -> list:
        """`method` on every actor of `group`; a dead one is replaced (`heal`) and all are asked again."""
        return self._retry_after_death(lambda: group.get_all(method, *args), "replacing dead actors", self.heal)

    def _retry_after_death(self, attempt: Callable[[], T], say: str, between: Callable[[], None] | None = None) -> T:
        """`attempt()`, tried again (after `between()`) where an actor it needed died, up to
        `max_attempts` tries in all; the last death is raised."""
        for n in range(1, self.max_attempts + 1):
            try:
                return attempt()
            except ActorDied as died:
                if n == self.max_attempts:
                    raise
                self.log(f"{died}; {say}")
                if between is not None:
                    between()
        raise AssertionError("unreachable")

    def sync(self, weights: Weights) -> None:
        """Every engine serves `weights` (a replaced engine is brought up to them)."""
        self.weights = weights
        try:
            weights.send(list(range(len(self.rollout))), weights.version)
        except ActorError as failed:  # an engine died or its transfer failed
            self.log(f"weight sync: {failed}; replacing the engines it left behind")
            self.heal()
