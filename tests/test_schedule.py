"""The sampling schedule, driven the way the training loop drives it, over a grid of every
(sync_every, max_staleness) shape the config accepts, fresh and resumed."""
from __future__ import annotations

import pytest

from cluster.schedule import Schedule
from core.config import Config

GRID = [(s, k) for s in range(1, 6) for k in range(s - 1, s + 4)]


def drive(max_steps: int, s: int, k: int, first_step: int = 0, version: int = 0):
    """The training loop's use of the schedule: per step, sample what is due from the version
    the engines serve, train batch `step`, sync when due. Returns per batch (step sampled at,
    version sampled from), the version served at each step, and the most batches in flight."""
    schedule = Schedule(max_steps, s, k, next_batch=first_step)
    sampled: dict[int, tuple[int, int]] = {}
    served, most_in_flight = {}, 0
    for step in range(first_step, max_steps):
        served[step] = version
        for t in schedule.sample_now(version):
            assert t not in sampled, f"batch {t} sampled twice"
            sampled[t] = (step, version)
        assert step in sampled, f"step {step}: its batch was never asked for"
        most_in_flight = max(most_in_flight, sum(1 for t in sampled if t >= step))
        if schedule.syncs_after(step):
            version = step + 1
    return sampled, served, most_in_flight


@pytest.mark.parametrize("s,k", GRID)
def test_every_batch_is_sampled_once_in_time_fresh_and_as_early_as_allowed(s, k):
    for max_steps in range(0, 14):
        # a fresh run, and a run resumed at every step (engines serve the last synced version)
        for first_step in range(0, max_steps + 1):
            version = first_step - first_step % s
            sampled, served, most = drive(max_steps, s, k, first_step, version)
            assert sorted(sampled) == list(range(first_step, max_steps))
            for t, (at, v) in sampled.items():
                assert t - v <= k, f"batch {t} sampled from version {v}: {t - v} > {k} versions old"
                if at > first_step:  # one step earlier, the engines' version was too old for it
                    assert t - served[at - 1] > k, f"batch {t} could have been sampled at step {at - 1}"
            assert most <= k + 1


@pytest.mark.parametrize("s,k", GRID)
def test_fresh_run_samples_batch_t_from_the_first_sync_point_fresh_enough(s, k):
    sampled, _, _ = drive(20, s, k)
    # engines serve multiples of s; the first one within k of t is s * ceil((t - k) / s)
    assert [v for _, (_, v) in sorted(sampled.items())] == [s * -(-max(0, t - k) // s) for t in range(20)]


def test_generation_overlaps_learning_as_far_as_staleness_allows():
    sampled, _, most = drive(6, 1, 2)
    assert [at for _, (at, _) in sorted(sampled.items())] == [0, 0, 0, 1, 2, 3] and most == 3
    sampled, _, most = drive(6, 2, 1)  # the next batch needs the next sync: two at a time
    assert [at for _, (at, _) in sorted(sampled.items())] == [0, 0, 2, 2, 4, 4] and most == 2


def test_a_schedule_the_config_refuses_is_refused_here_too():
    for s, k in [(2, 0), (3, 1), (5, 3)]:
        with pytest.raises(ValueError, match="sync_every - 1"):
            Config.model_validate({"trainer": {"sync_every": s, "max_staleness": k}})
        with pytest.raises(ValueError, match="sync_every - 1"):
            Schedule(10, s, k)
    for s, k in GRID:
        Config.model_validate({"trainer": {"sync_every": s, "max_staleness": k}})
