"""Rollout tokens/s through RolloutActors under Ray vs bare `vllm.LLM` engines.

Both sides: the same tiny model, prompts and sampling (n=8, temperature 1, logprobs, the
same max_tokens and the same per-request seed, so both sides sample the same tokens), one
OpenMP thread per engine (what core.engine does), eager mode, the same KV cache size, and
each engine in its own process. The bare side is a `vllm.LLM` in a spawned process driven
over a pipe; the actor side is `RolloutActor.generate` returning an Arrow table to the
driver. Time is wall time seen by the driver on both sides. Repetitions alternate the sides.

    PYTHONPATH=. .venv/bin/python -m benchmarks.rollout_efficiency --quick
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result, build_model, finish, median, parse_mode

SETTINGS = {
    "quick": {"prompts": 8, "max_tokens": 128, "reps": 5, "pairs": (1,)},
    "full": {"prompts": 16, "max_tokens": 160, "reps": 7, "pairs": (1, 2)},
}
ENGINE = {"dtype": "float32", "max_model_len": 512, "kv_cache_gb": 0.25}
N = 8
TARGET = 0.95


def bare_engine_main(conn, model_path: str) -> None:
    """A bare vLLM engine with the settings core.engine uses, serving generate requests."""
    import torch

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    torch.set_num_threads(1)  # as core.engine._configure_process does, before vLLM starts
    from vllm import LLM, SamplingParams

    llm = LLM(model_path, dtype=ENGINE["dtype"], seed=0, max_model_len=ENGINE["max_model_len"],
              enforce_eager=True, kv_cache_memory_bytes=int(ENGINE["kv_cache_gb"] * 2**30))
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        prompt_ids, max_tokens, seed = msg
        params = SamplingParams(n=N, max_tokens=max_tokens, temperature=1.0, top_p=1.0, seed=seed,
                                logprobs=0, detokenize=False)
        outs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
        conn.send(sum(len(c.token_ids) for o in outs for c in o.outputs))


class BareEngines:
    def __init__(self, count: int, model_path: str):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=bare_engine_main, args=(child, model_path), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if not conn.poll(600) or conn.recv() != "ready":
                raise RuntimeError("a bare vLLM engine did not start within 600 s")

    def generate(self, shards: list[list[list[int]]], max_tokens: int, seed: int) -> int:
        for conn, shard in zip(self.conns, shards):
            conn.send((shard, max_tokens, seed))
        return sum(conn.recv() for conn in self.conns)

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            conn.send(None)
            proc.join(timeout=30)


def make_prompts(count: int) -> list[dict]:
    from core.arith_task import ArithTaskConfig, make_split
    from core.prompts import format_prompt

    rows = make_split(ArithTaskConfig(num_train=count, num_eval=1), "train")[:count]
    return [{"prompt_id": r["prompt_id"], "problem": r["problem"], "gold_answer": r["answer"],
             "prompt_text": format_prompt(r["problem"])} for r in rows]


def measure_pair(count: int, model_path: str, prompts: list[dict], cfg: dict) -> dict:
    """`count` actors vs `count` bare engines, prompts split evenly, sides alternating."""
    import ray
    from transformers import AutoTokenizer

    from actors.rollout import RolloutActor

    tok = AutoTokenizer.from_pretrained(model_path)
    shards = [prompts[i::count] for i in range(count)]
    id_shards = [[tok.encode(p["prompt_text"], add_special_tokens=False) for p in s] for s in shards]
    actors = [RolloutActor.options(num_cpus=1).remote(model_path, **ENGINE) for _ in range(count)]
    ray.get([a.ready.remote() for a in actors], timeout=600)
    bare = BareEngines(count, model_path)
    mt = cfg["max_tokens"]

    def run_actors(seed: int) -> int:
        tables = ray.get([a.generate.remote(s, n=N, max_tokens=mt, temperature=1.0, seed=seed)
                          for a, s in zip(actors, shards)], timeout=600)
        return sum(sum(len(x) for x in t.column("response_token_ids").to_pylist()) for t in tables)

    sides = {"actor": run_actors, "bare": lambda seed: bare.generate(id_shards, mt, seed)}
    rates: dict[str, list[float]] = {"actor": [], "bare": []}
    tokens: dict[str, list[int]] = {"actor": [], "bare": []}
    try:
        for side in sides.values():  # warm-up: first batches allocate and fill caches
            side(12345)
        for rep in range(cfg["reps"]):
            order = ("actor", "bare") if rep % 2 == 0 else ("bare", "actor")
            for name in order:
                t0 = time.perf_counter()
                n_tokens = sides[name](rep)
                rates[name].append(n_tokens / (time.perf_counter() - t0))
                tokens[name].append(n_tokens)
    finally:
        bare.close()
        ray.get([a.shutdown.remote() for a in actors], timeout=120)
        for a in actors:
            ray.kill(a)
    ratios = [a / b for a, b in zip(rates["actor"], rates["bare"])]
    return {
        "actor_tokens_per_s": median(rates["actor"]),
        "bare_tokens_per_s": median(rates["bare"]),
        "ratio_of_medians": median(rates["actor"]) / median(rates["bare"]),
        "median_pairwise_ratio": median(ratios),
        "same_token_counts": tokens["actor"] == tokens["bare"],
        "tokens_per_rep": tokens["actor"],
    }


def run(mode: str) -> Result:
    import ray

    cfg = SETTINGS[mode]
    prompts = make_prompts(cfg["prompts"])
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        model_path = str(build_model(Path(tmp) / "model"))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            pairs = {f"{c}_vs_{c}": measure_pair(c, model_path, prompts, cfg) for c in cfg["pairs"]}
        finally:
            ray.shutdown()
    headline = min(p["ratio_of_medians"] for p in pairs.values())
    return Result(
        name="rollout_efficiency", ratio_name="actor tokens/s / bare vLLM tokens/s (worst pair)",
        ratio=headline, target=f">= {TARGET}", met=headline >= TARGET,
        measurements={"settings": {**cfg, "n": N, **ENGINE}, **pairs},
        notes=["both sides: 1 OpenMP thread per engine, eager, same seed and sampling params"],
    )


if __name__ == "__main__":
    args = parse_mode(__doc__.splitlines()[0])
    finish(run(args.mode), args.json)
