"""The experience buffer under real local Ray: experience exists before `add` returns, and an add
whose scored table cannot be read forgets its groups, so they can be judged and added again."""
from __future__ import annotations

import pytest
import ray

from actors.judge import JudgeWorker
from cluster.buffer import create_buffer
from core.records import ROLLOUT_SCHEMA, to_table
from tests.test_judge_worker import varied_rows

pytestmark = pytest.mark.timeout(300)
G = 4


@pytest.fixture(scope="module")
def scored():
    """(summary, scored table) of 3 groups of G samples."""
    worker = JudgeWorker(backend="tool")
    try:
        yield worker.score(to_table(varied_rows(3 * G), ROLLOUT_SCHEMA))
    finally:
        worker.shutdown()


@ray.remote(num_cpus=0)
def unreadable():
    raise RuntimeError("this scored table was lost")


def test_experience_exists_when_add_returns(ray_local, scored):
    summary, table = scored
    buffer = create_buffer(G, 0, capacity_groups=8, algorithm="tpgrpo", alpha=1.0)
    try:
        assert ray.get(buffer.add.remote(summary, [ray.put(table)]), timeout=120) == 3
        taken = ray.get(buffer.take.remote(3, 0, 60), timeout=120)
        ready, _ = ray.wait(taken["experience"], num_returns=3, timeout=0, fetch_local=False)
        assert len(ready) == 3
        rows = [r for t in ray.get(taken["experience"]) for r in t.to_pylist()]
        assert sorted(taken["group_ids"]) == sorted(summary["groups"]) and len(rows) == 3 * G
    finally:
        ray.kill(buffer)


def test_an_add_that_cannot_read_its_table_forgets_its_groups_and_they_can_come_again(ray_local, scored):
    summary, table = scored
    buffer = create_buffer(G, 0, capacity_groups=8, algorithm="tpgrpo", alpha=1.0)
    try:
        with pytest.raises(Exception, match="this scored table was lost"):
            ray.get(buffer.add.remote(summary, [unreadable.remote()]), timeout=120)
        depth = ray.get(buffer.depth.remote(), timeout=60)
        assert (depth["ready_groups"], depth["pending_groups"], depth["groups_added"]) == (0, 0, 0)
        assert depth["judge_errors"] == 0  # counted when the groups do arrive
        assert ray.get(buffer.add.remote(summary, [ray.put(table)]), timeout=120) == 3
        taken = ray.get(buffer.take.remote(3, 0, 60), timeout=120)
        assert sorted(taken["group_ids"]) == sorted(summary["groups"]) and taken["num_samples"] == 3 * G
        depth = ray.get(buffer.depth.remote(), timeout=60)
        assert depth["groups_added"] == depth["groups_taken"] == 3
        assert depth["judge_errors"] == summary["judge_errors"]
    finally:
        ray.kill(buffer)
