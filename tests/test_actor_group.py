"""ActorGroup under real Ray: one timeout and error policy, dead told from busy, replacement."""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
import ray

from cluster.actor_group import CONTROL, ActorDied, ActorError, ActorGroup, get_together

pytestmark = pytest.mark.timeout(300)


class Worker:
    """`work` holds the actor's queue until `release` (served beside it) lets it finish. With
    `die_first`, the first one started ends its own process before it is ready (as an actor
    placed on a node that is going down does); later ones start normally. With `meet` (a
    Meeting), once it is armed, an actor starts only when another new one starts beside it."""

    def __init__(self, fail: bool = False, die_first: str | None = None, meet=None):
        if fail:
            raise ValueError("no such backend 'nope'")
        if die_first is not None and not os.path.exists(die_first):
            Path(die_first).touch()
            os._exit(1)
        if meet is not None:
            ray.get(meet.arrive.remote(), timeout=60)  # GetTimeoutError: it started alone
        self.gate = threading.Event()

    def ready(self) -> bool:
        return True

    def work(self) -> str:
        self.gate.wait()
        return "done"

    def release(self) -> None:
        self.gate.set()

    def boom(self, row: int) -> None:
        raise KeyError(f"row {row}")


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    # the actors' class lives in this test module: the workers must be able to import it
    path = f"{Path(__file__).parent}:{Path(__file__).parent.parent}"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def test_a_busy_actor_is_not_dead_and_a_killed_one_is(tmp_path):
    group = ActorGroup("w", Worker, 3, timeout_s=120, options={"num_cpus": 0})
    try:
        group.get_all("ready")
        working = group.call_all("work")  # every actor is busy until released
        assert group.dead_indices() == []
        ray.kill(group.actors[1])  # asynchronous: the death shows in the call it interrupts first
        with pytest.raises(ActorDied, match=r"w\.work on w-1: the actor died"):
            group.get(working, "work")
        assert group.dead_indices() == [1]
        group.replace([1])
        assert group.names == ["w-0", "w-1-r1", "w-2"] and group.dead_indices() == []
        assert ray.get_actor("w-1-r1") is not None
        for i in (0, 2):
            group.actors[i].release.options(concurrency_group=CONTROL).remote()
        assert ray.get([working[0], working[2]], timeout=60) == ["done", "done"]  # their queue was untouched
    finally:
        group.shutdown()
    assert not [n for n in ray.util.list_named_actors() if n.startswith("w-")]


@ray.remote
class Meeting:
    """Once armed, `arrive` answers only when two callers have arrived."""

    def __init__(self):
        self.armed, self.arrived, self.both = False, 0, asyncio.Event()

    async def arm(self) -> None:
        self.armed = True

    async def arrive(self) -> None:
        if not self.armed:
            return
        self.arrived += 1
        if self.arrived == 2:
            self.both.set()
        await self.both.wait()

    async def count(self) -> int:
        return self.arrived


def test_replacements_start_together():
    # Replaced one after the other, the first would wait for a partner that is never started.
    meeting = Meeting.options(num_cpus=0).remote()
    group = ActorGroup("w", Worker, 3, timeout_s=120, options={"num_cpus": 0}, kwargs={"meet": meeting})
    try:
        group.get_all("ready")
        ray.get(meeting.arm.remote(), timeout=60)
        group.replace([2, 0])
        assert group.names == ["w-0-r1", "w-1", "w-2-r1"] and group.get_all("ready") == [True] * 3
        assert ray.get(meeting.count.remote(), timeout=60) == 2
    finally:
        group.shutdown()
        ray.kill(meeting)


def test_a_replacement_that_dies_before_it_is_ready_is_started_again(tmp_path):
    marker = tmp_path / "died-once"
    group = ActorGroup("w", Worker, 1, timeout_s=120, options={"num_cpus": 0}, kwargs={"die_first": str(marker)})
    try:
        # the first actor dies starting; the group's own start is not retried: an error naming it
        with pytest.raises(ActorDied, match=r"w\.ready on w-0: the actor died"):
            group.call(0, "ready")
        marker.unlink()  # the next one to start dies too, the one after that lives
        group.replace([0], retry_after_s=0.1)
        assert marker.exists() and group.names == ["w-0-r2"] and group.call(0, "ready") is True
        marker.unlink()  # the tries are bounded: with one, a replacement that dies is an error
        with pytest.raises(ActorDied, match=r"w\.ready on w-0-r3: the actor died"):
            group.replace([0], attempts=1)
    finally:
        group.shutdown()


def test_a_check_that_gets_no_answer_reports_nothing_dead():
    class Stuck(Worker):
        def ready(self) -> bool:  # even the health check never answers
            threading.Event().wait()
            return True

    group = ActorGroup("stuck", Stuck, 1, timeout_s=1, options={"num_cpus": 0})
    try:
        assert group.dead_indices() == []  # unknown is not dead, and the check does not raise
    finally:
        group.shutdown()


def test_errors_name_the_actor_the_method_and_the_cause():
    group = ActorGroup("w", Worker, 2, timeout_s=120, options={"num_cpus": 0})
    try:
        with pytest.raises(ActorError, match=r"w\.boom on w-[01] failed: KeyError: 'row 7'") as err:
            group.get_all("boom", 7)
        assert not isinstance(err.value, ActorDied)
        assert group.call(1, "ready") is True
    finally:
        group.shutdown()


def test_a_call_past_the_groups_timeout_is_an_error_naming_who_did_not_answer():
    group = ActorGroup("slow", Worker, 2, timeout_s=120, options={"num_cpus": 0})
    try:
        group.get_all("ready")
        group.timeout_s = 0.5
        with pytest.raises(ActorError, match=r"slow\.work: no answer within 0\.5s from slow-0, slow-1"):
            group.get_all("work")
    finally:
        group.shutdown()


def test_a_constructor_that_fails_is_an_error_not_a_death():
    group = ActorGroup("bad", Worker, 1, timeout_s=120, options={"num_cpus": 0}, kwargs={"fail": True})
    try:
        with pytest.raises(ActorError, match=r"bad\.ready on bad-0 failed: .*ValueError: no such backend 'nope'") as err:
            group.get_all("ready")
        assert not isinstance(err.value, ActorDied)  # replacing it would only fail again
    finally:
        group.shutdown()


def test_an_actor_that_cannot_start_ends_the_wait_for_every_group():
    # The busy group's calls finish only when released: waiting for one group after the other,
    # the bad group's error would come after the 120 s timeout, as a timeout of the busy one.
    busy = ActorGroup("busy", Worker, 2, timeout_s=120, options={"num_cpus": 0})
    bad = ActorGroup("bad", Worker, 1, timeout_s=120, options={"num_cpus": 0}, kwargs={"fail": True})
    other = ActorGroup("other", Worker, 1, timeout_s=120, options={"num_cpus": 0})
    try:
        busy.get_all("ready")
        working = busy.call_all("work")
        with pytest.raises(ActorError, match=r"^bad\.ready on bad-0 failed: .*no such backend 'nope'"):
            busy.get(working, "work", alongside=[(bad, "ready", bad.call_all("ready"))])
        # Late calls of several groups are all named; results come back per call, in order.
        other.get_all("ready")
        other.timeout_s = busy.timeout_s = 0.5
        with pytest.raises(ActorError, match=r"^no answer within 0\.5s: busy\.work from busy-0, busy-1; other\.work "
                                             r"from other-0$"):
            get_together([(busy, "work", working), (other, "work", other.call_all("work"))])
        other.timeout_s = busy.timeout_s = 120
        for actor in busy.actors + other.actors:
            actor.release.options(concurrency_group=CONTROL).remote()
        assert get_together([(busy, "work", working), (other, "ready", other.call_all("ready"))]) == \
            [["done", "done"], [True]]
    finally:
        for group in (busy, bad, other):
            group.shutdown()
