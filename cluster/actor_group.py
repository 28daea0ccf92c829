"""A named group of identical Ray actors, and the one way the driver waits on them.

Rollout engines, judges and learner ranks are all ActorGroups: N actors named `<group>-<i>`
(a replacement `<group>-<i>-r1`, then `-r2`, ...), created with the same options and arguments,
called one at a time or all at once, replaced when dead, stopped together.

One policy for every wait (`get`): at most `timeout_s` (the config's `trainer.call_timeout_s`),
and the first call that fails ends the wait at once, as an `ActorError` that names the group,
the actor, the method and the actor's own exception. An actor that is gone raises `ActorDied`,
which the pipeline heals by replacing the actor and re-issuing its work; an actor whose
constructor failed is not "dead" (a replacement would fail the same way), it is an error.

Health checks do not queue behind work: every actor serves `ready` in a concurrency group of
its own, so a busy actor answers at once while its queued calls wait, and a dead one fails fast.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import ray

CONTROL = "control"  # the concurrency group that answers health checks beside queued work


class ActorError(RuntimeError):
    """A remote call failed or gave no answer in time; the message names the part and the cause."""


class ActorDied(ActorError):
    """An actor this call depended on is gone; replacing it and retrying is safe."""


def _describe(err: BaseException) -> str:
    """The actor's own exception where there is one, not Ray's wrapper and traceback."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
        return f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    init_failed = getattr(err, "actor_init_failed", False)
    # A failed constructor's message ends with its exception; a death's begins with the reason.
    return f"{type(err).__name__}: {(lines[-1] if init_failed else lines[0]) if lines else ''}"


def _is_death(err: BaseException) -> bool:
    for e in (err, getattr(err, "cause", None)):
        if isinstance(e, ray.exceptions.RayActorError):
            return not getattr(e, "actor_init_failed", False)
    return False


def _late(pending: list, position: dict, whats: list[str], names: list[str], timeout_s: float) -> str:
    """`<call>: no answer within <t>s from <actors>`; with calls of several kinds late, one
    clause per kind."""
    late: dict[str, list[str]] = {}
    for ref in pending:
        i = position[ref]
        late.setdefault(whats[i], []).extend([names[i]] if names[i] else [])

    def who(actors: list[str]) -> str:
        return f" from {', '.join(actors)}" if actors else ""
    if len(late) == 1:
        [(what, actors)] = late.items()
        return f"{what}: no answer within {timeout_s:g}s{who(actors)}"
    return f"no answer within {timeout_s:g}s: " + "; ".join(what + who(actors) for what, actors in late.items())


def get(refs, timeout_s: float, what: str | list[str], names: list[str] | None = None):
    """`ray.get` under the one policy above. `refs` is one ObjectRef or a list; `what` names the
    call (or each call: a list, one per ref) and `names` (one per ref) the actor it went to, for
    the error message."""
    many = isinstance(refs, list)
    refs = refs if many else [refs]
    names = names or [""] * len(refs)
    whats = what if isinstance(what, list) else [what] * len(refs)
    position = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(refs)
    pending, deadline = list(refs), time.monotonic() + timeout_s
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()),
                                 fetch_local=False)
        if not done:
            raise ActorError(_late(pending, position, whats, names, timeout_s))
        for ref in done:
            i = position[ref]
            where = f"{whats[i]} on {names[i]}" if names[i] else whats[i]
            try:
                out[i] = ray.get(ref, timeout=timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise ActorError(f"{where}: no answer within {timeout_s:g}s") from None
            except ray.exceptions.RayError as e:
                if _is_death(e):
                    raise ActorDied(f"{where}: the actor died ({_describe(e)})") from e
                raise ActorError(f"{where} failed: {_describe(e)}") from e
    return out if many else out[0]


def get_together(calls: list[tuple["ActorGroup", str, list]]) -> list[list]:
    """Several groups' calls, each `(group, method, refs)` with one ref per actor, awaited as one:
    the first failure in any group ends the wait (an actor that cannot start fails the run while
    the others are still loading, not after them). Results per call, in order."""
    refs = [ref for _, _, rs in calls for ref in rs]
    whats = [f"{g.name}.{method}" for g, method, rs in calls for _ in rs]
    names = [g.actor_name(i) for g, _, rs in calls for i in range(len(rs))]
    flat = get(refs, max(g.timeout_s for g, _, _ in calls), whats, names)
    out, start = [], 0
    for _, _, rs in calls:
        out.append(flat[start:start + len(rs)])
        start += len(rs)
    return out


class ActorGroup:
    """`count` actors of `cls(*args, **kwargs)`, each created with `.options(**options)`; every
    wait lasts at most `timeout_s`. `cls` needs a `ready()` method (the health check)."""

    def __init__(self, name: str, cls: type, count: int, timeout_s: float, options: dict | None = None,
                 args: tuple = (), kwargs: dict | None = None):
        if count < 1:
            raise ValueError(f"{name}: an actor group needs at least 1 actor, got {count}")
        self.name, self.timeout_s = name, timeout_s
        self._remote_cls = ray.remote(concurrency_groups={CONTROL: 1})(cls)
        self._options, self._args, self._kwargs = dict(options or {}), args, dict(kwargs or {})
        self.generation = [0] * count  # replacements so far, per index
        self.actors = [self._create(i) for i in range(count)]
        self._next = itertools.cycle(range(count))

    def _create(self, index: int):
        return self._remote_cls.options(name=self.actor_name(index), **self._options).remote(
            *self._args, **self._kwargs)

    def actor_name(self, index: int) -> str:
        """`<group>-<index>`, then `-r1`, `-r2` after replacements: findable with ray.get_actor."""
        g = self.generation[index]
        return f"{self.name}-{index}" + (f"-r{g}" if g else "")

    @property
    def names(self) -> list[str]:
        return [self.actor_name(i) for i in range(len(self.actors))]

    def __len__(self) -> int:
        return len(self.actors)

    def next_index(self) -> int:
        """Round robin over the actors."""
        return next(self._next)

    def call_all(self, method: str, *args, **kwargs) -> list:
        """Start `method` on every actor; returns ObjectRefs, one per actor in order."""
        return [getattr(a, method).remote(*args, **kwargs) for a in self.actors]

    def call(self, index: int, method: str, *args, **kwargs) -> Any:
        """`method` on one actor, awaited under the group's policy."""
        ref = getattr(self.actors[index], method).remote(*args, **kwargs)
        return get(ref, self.timeout_s, f"{self.name}.{method}", [self.actor_name(index)])

    def get(self, refs: list, method: str, alongside: list[tuple["ActorGroup", str, list]] = ()) -> list:
        """The results of one call per actor (in actor order), under the group's policy.
        `alongside`: other groups' calls in flight, awaited with these (`get_together`)."""
        if alongside:
            return get_together([(self, method, refs), *alongside])[0]
        return get(refs, self.timeout_s, f"{self.name}.{method}", self.names)

    def get_all(self, method: str, *args, **kwargs) -> list:
        return self.get(self.call_all(method, *args, **kwargs), method)

    def dead_indices(self) -> list[int]:
        """The actors that are gone. A busy actor answers the check beside its queued work; one
        that does not answer within the timeout is reported as alive (its own calls then time
        out with a clear error). Never raises: a failed check must not end the run."""
        pings = {a.ready.options(concurrency_group=CONTROL).remote(): i for i, a in enumerate(self.actors)}
        try:
            done, _ = ray.wait(list(pings), num_returns=len(pings), timeout=self.timeout_s, fetch_local=False)
        except Exception:  # noqa: BLE001 - a broken check reports nothing dead rather than crash
            return []
        dead = []
        for ref in done:
            try:
                ray.get(ref, timeout=self.timeout_s)
            except ray.exceptions.RayActorError:
                dead.append(pings[ref])
            except Exception:  # noqa: BLE001 - not a death: the actor is there
                pass
        return sorted(dead)

    def replace(self, indices: list[int], attempts: int = 4, retry_after_s: float = 10.0) -> None:
        """Fresh actors in place of `indices` (killing the old ones that still run), started
        together, all ready when this returns. A replacement that dies before it is ready is
        started again, up to `attempts` starts in all: when a node is lost, its placement-group
        bundles move elsewhere only once Ray has declared the node dead, and an actor placed
        there in the meantime dies with it."""
        pending = sorted(set(indices))
        for attempt in range(1, attempts + 1):
            for i in pending:
                ray.kill(self.actors[i])
                self.generation[i] += 1
                self.actors[i] = self._create(i)
            refs = {i: self.actors[i].ready.remote() for i in pending}
            died = []
            for i, ref in refs.items():
                try:
                    get(ref, self.timeout_s, f"{self.name}.ready", [self.actor_name(i)])
                except ActorDied:
                    if attempt == attempts:
                        raise
                    died.append(i)
            if not died:
                return
            pending = died
            time.sleep(retry_after_s)  # the cluster needs time to notice the loss, not a poll

    def shutdown(self) -> None:
        """Kill every actor (a dead or never-started one too); never raises."""
        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone, or Ray itself is down
                pass
