"""The default job across three Ray nodes on one machine, and one of them lost mid-run.

The README's cluster path with real `ray start` nodes, as Ray's own tests run several nodes on
one host: a head (`ray start --head --metrics-export-port`, tests/ray_head.py)
and two workers (`ray start --address`), each with its own ports and metrics export port. The
job joins through `RAY_ADDRESS` with resources that give every role a placement group, and
Debian's `prometheus` reads only Ray's service discovery file. After the first step, the worker
node that holds rollout or judge actors and no learner rank is killed (SIGKILL of all its
processes: its raylet, object store and actors go at once). The test checks that

- the placement groups pack and spread as the README says (learner ranks on one node, rollout
  engines on one node, judges on two);
- Prometheus scraped every node's metrics agent, found only through service discovery, and
  dropped the lost node's agent when Ray's file did; the dashboard still answers;
- the run ends at its step count on the two nodes left, every sample trained exactly once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cluster.report import read_records
from core.config import load_config
from tests.conftest import MODEL_CACHE, ROOT
from tests.test_e2e import assert_exactly_once
from tests.prometheus import PROMETHEUS, prom_api, query, sd_targets, start_prometheus, stop, wait_for
from tests.ray_head import BIN, RayHead, free_port, ray_head, session_members
from tests.test_cluster_job import RAY_ENV

RUN = "multinode"
STEPS = 10  # the node goes down after the first; the run must still have steps left
WORKER_CPUS = 3  # the head has 2: whichever node the learner packs onto, the rest still fits
RUN_ARGS = [
    f"name={RUN}", "warm_start.enabled=false", f"model.cache_dir={MODEL_CACHE}", f"trainer.max_steps={STEPS}",
    "trainer.prompts_per_step=4", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=48",
    "data.eval_size=4", "data.synthetic.num_train=200", "data.synthetic.num_eval=4", "trainer.eval_every=0",
    "rollout.num_actors=2", "judge.num_actors=2", "learner.num_ranks=2",
    "rollout.num_cpus_per_actor=1", "judge.num_cpus_per_actor=0.5", "learner.num_cpus_per_rank=1",
]
RUN_DEADLINE_S = 600
WORKER_PORT_FLAGS = ("node-manager-port", "object-manager-port", "metrics-export-port",
                     "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")

pytestmark = [pytest.mark.slow,  # three Ray nodes and a run: `make test-all`
              pytest.mark.timeout(RUN_DEADLINE_S + 600),
              pytest.mark.skipif(PROMETHEUS is None, reason="the `prometheus` binary is absent "
                                                            "(Debian: apt-get install -y prometheus)")]


class RayWorkerNode:
    """`ray start --address=HEAD --block` with ports of its own and a `node` label, on this machine."""

    def __init__(self, head: RayHead, name: str, num_cpus: int):
        self.name = name
        self.ports = {flag: free_port() for flag in WORKER_PORT_FLAGS}
        self.log = open(head.tmp / f"{name}.log", "w")
        self.proc = subprocess.Popen(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{head.ports['port']}", "--block",
             "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0", "--disable-usage-stats",
             f"--labels=node={name}", *[f"--{flag}={port}" for flag, port in self.ports.items()],
             # sockets and logs of its own: nodes starting together in one directory pick the same names
             f"--temp-dir={head.tmp / name}"],
            env=head.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def agent_port(self) -> int:
        return self.ports["metrics-export-port"]

    def kill(self) -> None:
        """Every process of the node at once, as when its machine goes down."""
        for pid in session_members(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=60)
        self.log.close()


def ray_list(head: RayHead, what: str) -> list[dict]:
    """`ray list WHAT --detail` through the head's dashboard."""
    out = head.ray("list", what, "--address", head.dashboard, "--format", "json", "--detail", "--limit", "10000",
                   timeout_s=120)
    assert out.returncode == 0, out.stderr[-2000:]
    if out.stdout.strip() == "No resource in the cluster":  # what it prints instead of an empty list
        return []
    return json.loads(out.stdout)


def node_names(head: RayHead) -> dict[str, str]:
    """Node id → "head" or the worker's `node` label."""
    return {n["node_id"]: "head" if n["is_head_node"] else n["labels"]["node"] for n in ray_list(head, "nodes")}


@pytest.fixture(scope="module")
def cluster():
    """A head and two workers exporting metrics every second; yields (head, workers by name,
    Ray's service discovery file, metrics agent by node name)."""
    with ray_head("trl-mn-", RAY_ENV) as head:  # the workers inherit RAY_ENV through head.env
        workers: dict[str, RayWorkerNode] = {}
        try:
            workers = {name: RayWorkerNode(head, name, WORKER_CPUS) for name in ("worker0", "worker1")}
            ports = {"head": head.ports["metrics-export-port"], **{n: w.agent_port for n, w in workers.items()}}
            sd_file = head.tmp / "ray" / "prom_metrics_service_discovery.json"

            def listed() -> dict[str, str] | None:  # node → its agent as the file lists it (IP:port)
                found = {n: t for n, port in ports.items() for t in sd_targets(sd_file) if t.endswith(f":{port}")}
                return found if len(found) == len(ports) else None

            agents = wait_for("all three nodes' metrics agents in Ray's service discovery file", listed,
                              timeout_s=240)
            yield head, workers, sd_file, agents
        finally:
            for w in workers.values():
                if w.proc.poll() is None:
                    w.kill()


def placement(head: RayHead) -> dict[str, list[str]]:
    """Role → the node name of each bundle of its placement group."""
    names = node_names(head)
    groups = {g["name"]: g for g in ray_list(head, "placement-groups") if g["state"] == "CREATED"}
    return {role: [names[b["node_id"]] for b in groups[f"{RUN}-{role}"]["bundles"]]
            for role in ("learner", "rollout", "judge") if f"{RUN}-{role}" in groups}


def our_actors(head: RayHead) -> dict[str, str]:
    """Live actor name → node name, for the run's actors."""
    names = node_names(head)
    return {a["name"]: names[a["node_id"]] for a in ray_list(head, "actors")
            if a["state"] == "ALIVE" and a["name"].split("-")[0] in ("rollout", "judge", "learner", "buffer")}


@pytest.fixture(scope="module")
def lost_node_run(cluster):
    """The run, with Prometheus on Ray's service discovery file, and the worker node that holds
    rollout or judge actors but no learner rank killed after the first step."""
    head, workers, sd_file, agents = cluster
    prom = run = None
    out = head.tmp / "runs"
    try:
        prom, base = start_prometheus(head.tmp, (
            "  - job_name: ray\n"
            f"    file_sd_configs: [{{files: ['{sd_file}'], refresh_interval: 2s}}]\n"))
        started = time.time()
        sets = [a for s in RUN_ARGS + [f"trainer.output_dir={out}"] for a in ("--set", s)]
        log = head.tmp / "run.log"
        run = subprocess.Popen([sys.executable, "-m", "cluster.launch", "configs/local.yaml", *sets],
                               cwd=ROOT, env=head.driver_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)

        def placed_and_alive():
            assert run.poll() is None, f"the run ended early: {log.read_text()[-3000:]}"
            placed, actors = placement(head), our_actors(head)
            return (placed, actors) if len(placed) == 3 and len(actors) == 7 else None

        def first_step():
            assert run.poll() is None, f"the run ended early: {log.read_text()[-3000:]}"
            return read_records(out / RUN, "step")

        # Where everything runs is read before training starts (`ray list` takes seconds, as
        # long as several steps), so the node goes down right after the first step.
        placed, actors = wait_for("the run's actors, placed", placed_and_alive, timeout_s=RUN_DEADLINE_S,
                                  every_s=2)
        roles_on = lambda node: [a.split("-")[0] for a, n in actors.items() if n == node]  # noqa: E731
        # the worker with the most engines (then judges) of those that hold no learner rank
        victim = max((n for n in workers if "learner" not in roles_on(n)),
                     key=lambda n: (roles_on(n).count("rollout"), roles_on(n).count("judge")))
        wait_for("the run's first step", first_step, timeout_s=RUN_DEADLINE_S, every_s=0.2)
        workers[victim].kill()
        killed_at_step = max(r["step"] for r in read_records(out / RUN, "step"))
        try:
            run.wait(timeout=RUN_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not finish within {RUN_DEADLINE_S}s: {log.read_text()[-3000:]}")
        assert run.returncode == 0, f"the run failed (rc {run.returncode}): {log.read_text()[-3000:]}"
        wait_for("the lost node's agent gone from Ray's service discovery file",
                 lambda: agents[victim] not in sd_targets(sd_file), timeout_s=120)
        active = wait_for("Prometheus following the file", lambda: (lambda t: t if agents[victim] not in t else None)(
            {t["labels"]["instance"] for t in prom_api(base, "/api/v1/targets", state="active")["activeTargets"]}),
            timeout_s=60)
        # over the whole run: what was scraped from each agent, the lost one included
        up = {r["metric"]["instance"]: float(r["value"][1]) for r in query(base, 'max_over_time(up{job="ray"}[30m])')}
        # the raw samples of the whole run (a function over several metric names would drop the
        # names and leave series with equal labels, which Prometheus refuses)
        exporting = {r["metric"]["instance"] for r in query(
            base, f'{{__name__=~"ray_thoughtrl_.+", run="{RUN}"}}[30m]')}
        yield {"placed": placed, "actors": actors, "victim": victim, "killed_at_step": killed_at_step,
               "agents": agents, "up": up, "exporting": exporting, "active_after": active,
               "summary": json.loads((out / RUN / "summary.json").read_text()),
               "steps": read_records(out / RUN, "step"), "started": started, "head": head}
    finally:
        stop(run)
        stop(prom)


def test_placement_groups_pack_learners_and_engines_and_spread_judges(lost_node_run):
    placed = lost_node_run["placed"]
    assert len(placed["learner"]) == 2 and len(set(placed["learner"])) == 1, placed  # PACK, as it fits
    assert len(placed["rollout"]) == 2 and len(set(placed["rollout"])) == 1, placed
    assert len(placed["judge"]) == 2 and len(set(placed["judge"])) == 2, placed  # SPREAD
    actors = lost_node_run["actors"]
    assert actors["buffer"] == "head"  # with the driver: a lost worker node never takes it
    for role, nodes in placed.items():  # every actor runs in its role's bundles
        assert sorted(n for a, n in actors.items() if a.startswith(role + "-")) == sorted(nodes), (role, actors)


def test_prometheus_scraped_every_nodes_agent_through_service_discovery(lost_node_run):
    agents, victim = lost_node_run["agents"], lost_node_run["victim"]
    assert all(lost_node_run["up"].get(a) == 1 for a in agents.values()), lost_node_run["up"]
    # each node that held one of the run's actors exported its metrics through its own agent
    held = set(lost_node_run["actors"].values())
    assert {agents[n] for n in held} <= lost_node_run["exporting"], (held, lost_node_run["exporting"])
    assert len(held) == 3
    # the lost node left Ray's file and Prometheus followed; the others stayed
    assert agents[victim] not in lost_node_run["active_after"]
    assert {a for n, a in agents.items() if n != victim} <= lost_node_run["active_after"]


def test_the_dashboard_answers_after_the_node_is_lost(lost_node_run):
    head = lost_node_run["head"]
    version = json.loads(http_get_auth(f"{head.dashboard}/api/version", head.headers))
    assert version["ray_version"]
    states = {n["labels"].get("node", "head"): n["state"] for n in ray_list(head, "nodes")}
    assert states[lost_node_run["victim"]] == "DEAD" and list(states.values()).count("ALIVE") == 2, states


def test_a_node_lost_mid_run_costs_no_sample(lost_node_run):
    summary, victim, actors = lost_node_run["summary"], lost_node_run["victim"], lost_node_run["actors"]
    assert lost_node_run["killed_at_step"] < STEPS
    lost_roles = {a.split("-")[0] for a, n in actors.items() if n == victim}
    assert lost_roles and lost_roles <= {"rollout", "judge"}
    for role in lost_roles:  # its actors died with it and were replaced on the nodes left
        assert summary["actor_restarts"][role] >= 1, summary["actor_restarts"]
    assert summary["steps"] == STEPS and summary["policy_version"] == STEPS
    assert summary["engine_versions"] == [STEPS, STEPS] and summary["weights_in_sync"] is True
    cfg = load_config(ROOT / "configs/local.yaml", RUN_ARGS)
    assert_exactly_once(cfg, summary, lost_node_run["steps"])


def http_get_auth(url: str, headers: dict) -> str:
    import urllib.request
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as r:
        return r.read().decode()
