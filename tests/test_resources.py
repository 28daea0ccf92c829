"""Resource check and placement groups against a real local Ray with 2 CPUs and no GPU."""
import time
from pathlib import Path

import pytest
import ray

from cluster.resources import (ResourceError, check_cluster, release, required_resources, reserve,
                               rollout_engine_kwargs)
from core.config import load_config

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / "configs/local.yaml"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def free_cpus_after(seconds: float, want: float) -> float:
    """Free CPUs once they reach `want` (removal is asynchronous), or after `seconds`."""
    deadline = time.monotonic() + seconds
    while (free := ray.available_resources().get("CPU", 0)) != pytest.approx(want) and time.monotonic() < deadline:
        time.sleep(0.2)
    return free


@ray.remote(num_cpus=0)
class WhereAmI:
    def placement_group_id(self) -> str | None:
        pg = ray.util.get_current_placement_group()
        return pg.id.hex() if pg else None


def test_too_many_gpus_fails_fast_naming_each_role(local_ray):
    cfg = load_config(LOCAL, ["rollout.num_actors=4", "rollout.num_gpus_per_actor=1",
                              "rollout.tensor_parallel_size=2", "learner.num_ranks=8",
                              "learner.num_gpus_per_rank=1"])
    with pytest.raises(ResourceError) as err:
        check_cluster(cfg)
    assert ("config asks for 16 GPUs (rollout 8 = 4 actors × 2, learner 8 = 8 ranks × 1); "
            "the cluster has 0 GPUs") in str(err.value)
    assert "CPUs" not in str(err.value)  # nothing asks for CPUs, so nothing about them


def test_too_many_cpus_fails_fast(local_ray):
    cfg = load_config(LOCAL, ["judge.num_actors=3", "judge.num_cpus_per_actor=1",
                              "learner.num_ranks=2", "learner.num_cpus_per_rank=0.5"])
    with pytest.raises(ResourceError, match=r"config asks for 4 CPUs \(judge 3 = 3 actors × 1, "
                                            r"learner 1 = 2 ranks × 0.5\); the cluster has 2 CPUs"):
        check_cluster(cfg)


def test_local_config_needs_nothing_and_reserves_nothing(local_ray):
    cfg = load_config(LOCAL)
    assert check_cluster(cfg) == {"GPU": 0, "CPU": 0}
    placed = reserve(cfg, timeout_s=10)
    # Ray rejects all-zero bundles; these roles run unreserved, exactly as before.
    assert all(p.group is None for p in placed.values())
    assert placed["rollout"].options == {"num_cpus": 0, "num_gpus": 0}
    assert placed["learner"].scheduling == {}


def test_satisfiable_config_reserves_a_group_per_role_and_actors_run_inside(local_ray):
    cfg = load_config(LOCAL, ["judge.num_actors=2", "judge.num_cpus_per_actor=0.5",
                              "learner.num_ranks=2", "learner.num_cpus_per_rank=0.25"])
    placed = reserve(cfg, timeout_s=30)
    try:
        assert placed["rollout"].group is None  # 0 CPUs, 0 GPUs
        judge, learner = placed["judge"], placed["learner"]
        assert judge.group.bundle_specs == [{"CPU": 0.5}, {"CPU": 0.5}]
        assert learner.group.bundle_specs == [{"CPU": 0.25}, {"CPU": 0.25}]
        assert free_cpus_after(10, want=0.5) == pytest.approx(0.5)
        actors = [WhereAmI.options(**judge.options).remote() for _ in range(2)]
        assert ray.get([a.placement_group_id.remote() for a in actors], timeout=60) == [judge.group.id.hex()] * 2
        # The group is full: a third judge cannot start until one of the two leaves.
        extra = WhereAmI.options(**judge.options).remote()
        ready, _ = ray.wait([extra.placement_group_id.remote()], timeout=2)
        assert not ready
        for a in actors + [extra]:
            ray.kill(a)
    finally:
        release(placed)
    assert free_cpus_after(10, want=2) == pytest.approx(2)


def test_busy_cluster_times_out_with_a_clear_error_and_leaves_nothing_reserved(local_ray):
    hog = ray.util.placement_group([{"CPU": 1.5}])  # another job holding most of the node
    ray.get(hog.ready(), timeout=30)
    try:
        cfg = load_config(LOCAL, ["judge.num_actors=1", "judge.num_cpus_per_actor=1"])
        with pytest.raises(ResourceError, match=r"could not reserve resources within 2s for judge: "
                                                r"1 × \{'CPU': 1.0\} SPREAD; free now: \{'CPU': '0.5'\}"):
            reserve(cfg, timeout_s=2)
    finally:
        ray.util.remove_placement_group(hog)
    pending = [pg for pg in ray.util.placement_group_table().values()
               if pg["name"] == "local-judge" and pg["state"] != "REMOVED"]
    assert not pending


def test_tensor_parallel_engines_hold_whole_gpus_on_one_node():
    cfg = load_config(LOCAL, ["rollout.num_actors=2", "rollout.num_gpus_per_actor=1",
                              "rollout.tensor_parallel_size=4"])
    assert required_resources(cfg)["rollout"].bundle() == {"GPU": 4}
    assert rollout_engine_kwargs(cfg) == {"distributed_executor_backend": "mp"}
    assert rollout_engine_kwargs(load_config(LOCAL)) == {}
    # 8 GPUs in total, but 4 per node: an engine of 4 fits, one of 8 does not.
    nodes = [{"GPU": 4, "CPU": 16}, {"GPU": 4, "CPU": 16}]
    assert check_cluster(cfg, {"GPU": 8, "CPU": 32}, nodes)["GPU"] == 8
    big = load_config(LOCAL, ["rollout.num_actors=1", "rollout.num_gpus_per_actor=1",
                              "rollout.tensor_parallel_size=8"])
    with pytest.raises(ResourceError, match="one rollout actor needs 8 GPUs on one node; the largest node has 4"):
        check_cluster(big, {"GPU": 8, "CPU": 32}, nodes)
    half = load_config(LOCAL, ["rollout.num_gpus_per_actor=0.5", "rollout.tensor_parallel_size=2"])
    with pytest.raises(ResourceError, match="each tensor-parallel shard needs one whole GPU"):
        required_resources(half)


@pytest.mark.parametrize("name, gpus_per_node, nodes", [("gpu_single_node.yaml", 8, 1), ("multi_node.yaml", 8, 4)])
def test_shipped_gpu_configs_fit_the_clusters_they_describe(name, gpus_per_node, nodes):
    cfg = load_config(ROOT / "configs" / name)
    node = {"GPU": gpus_per_node, "CPU": 96}
    wanted = check_cluster(cfg, {"GPU": gpus_per_node * nodes, "CPU": 96 * nodes}, [node] * nodes)
    assert wanted["GPU"] == gpus_per_node * nodes  # every GPU is used
    with pytest.raises(ResourceError, match="config asks for"):
        check_cluster(cfg, {"GPU": gpus_per_node * nodes - 1, "CPU": 96 * nodes}, [node] * nodes)
