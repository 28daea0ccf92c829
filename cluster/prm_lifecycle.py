"""The PRM lifecycle in one command: label → train → evaluate → RL judged by the trained PRM.

    python -m cluster.prm_lifecycle configs/prm.yaml [--set key=value ...] [--overwrite]

On one Ray session, each stage starting its actors and stopping them when done:
1. label (cluster/label.py): the policy's solutions to training problems, every step labelled;
2. train (cluster/prm_train.py): a Qwen2.5-Math-PRM-style model on the learner ranks;
3. evaluate (cluster/prm_eval.py): ProcessBench made from held-out problems for the trained PRM,
   the `tool` judge and the labels themselves (`label.method` with `label.options`, read at
   `label.threshold`); Best-of-N with the PRM against majority vote;
4. RL: the config's training run with `judge.backend: step_classifier` on the trained PRM
   (`lifecycle.rl`), and the same run judged by `lifecycle.rl_baseline` (e.g. `tool`) if set.

Everything lands in runs/<name>/: labels.parquet, prm/, processbench_arith.json,
best_of_n_candidates.jsonl, rl/ (and rl-<baseline>/), metrics.jsonl, logs/ and summary.json,
whose numbers are also printed at the end. A directory that holds a run is refused unless
`--overwrite` (which deletes what an earlier lifecycle wrote there).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import ray

from cluster.label import label, label_path
from cluster.logs import route_library_logs
from cluster.prm_eval import best_of_n_task, label_options, prm_options, processbench_task, sample_task, write_jsonl
from cluster.prm_stage import open_stage, stage_main
from cluster.prm_train import prm_paths, train_prm
from cluster.report import RunLog, write_summary
from cluster.run_dir import RunDir
from cluster.train import load_data, to_prompts, train
from core.arith_processbench import make_samples
from core.config import Config
from core.prompts import PromptFormat

OUTPUTS = ("labels.parquet", "label_rollouts", "prm", "processbench_arith.json", "best_of_n_candidates.jsonl")


def rl_config(cfg: Config, judge: str, options: dict, name: str) -> Config:
    """The config's training run judged by `judge`, as runs/<name>/<name of the RL run>/, on the
    policy the lifecycle already built (the same model cache)."""
    cache = cfg.model.cache_dir or str(Path(cfg.trainer.output_dir) / "_models")
    return cfg.model_copy(update={
        "name": name,
        "judge": cfg.judge.model_copy(update={"backend": judge, "options": options}),
        "trainer": cfg.trainer.model_copy(update={"output_dir": str(cfg.run_dir)}),
        "model": cfg.model.model_copy(update={"cache_dir": cache})})


def evaluate(cfg: Config, policy: str, prm_dir: Path, eval_rows: list[dict], log: RunLog) -> dict:
    """ProcessBench (PRM, tool, the labels the label job gives) and Best-of-N (PRM, tool), side by side."""
    lc, run_dir = cfg.lifecycle, cfg.run_dir
    resources = {"num_cpus": cfg.judge.num_cpus_per_actor, "num_gpus": cfg.judge.num_gpus_per_actor}
    samples = make_samples(eval_rows[:lc.processbench_problems], cfg.seed)
    (run_dir / "processbench_arith.json").write_text(json.dumps(samples, indent=1))
    log.info(f"evaluate: ProcessBench of {len(samples)} samples from {min(len(eval_rows), lc.processbench_problems)} "
             f"held-out problems; Best-of-{lc.best_of_n} on {min(len(eval_rows), lc.best_of_n_problems)}")
    prompt = PromptFormat.for_model(policy, **cfg.prompt.model_dump())
    prompts = to_prompts(eval_rows[:lc.best_of_n_problems], "bon", prompt)
    candidates = ray.get(sample_task.options(**resources).remote(policy, prompts, lc.best_of_n, cfg))
    write_jsonl(run_dir / "best_of_n_candidates.jsonl", candidates)
    pending = {
        ("processbench", "prm"): processbench_task.options(**resources).remote(
            "step_classifier", prm_options(prm_dir), samples),
        ("processbench", "tool"): processbench_task.options(**resources).remote("tool", {}, samples),
        ("processbench", "labels"): processbench_task.options(**resources).remote(
            cfg.label.method, label_options(cfg, policy), samples, cfg.label.threshold),
        ("best_of_n", "prm"): best_of_n_task.options(**resources).remote(
            "step_classifier", prm_options(prm_dir), candidates),
        ("best_of_n", "tool"): best_of_n_task.options(**resources).remote("tool", {}, candidates),
    }
    out: dict = {"processbench": {}, "best_of_n": {}}
    for (what, judge), ref in pending.items():
        out[what][judge] = ray.get(ref, timeout=cfg.trainer.call_timeout_s)
    for judge, r in out["processbench"].items():
        log.info(f"ProcessBench (arithmetic) {judge:18s} F1 {r['f1']:.3f} (erroneous {r['acc_erroneous']:.3f}, "
                 f"correct {r['acc_correct']:.3f}; by error {r['accuracy_by_error']})")
    for judge, r in out["best_of_n"].items():
        acc = r["accuracy"]
        log.info(f"Best-of-{lc.best_of_n} by {judge}: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items())
                 + f"; oracle {r['oracle']:.3f}, single {r['mean_candidate_accuracy']:.3f}")
    return out


def rl_runs(cfg: Config, prm_dir: Path, log: RunLog) -> dict:
    """The RL run judged by the trained PRM (and by `lifecycle.rl_baseline`): their summaries."""
    runs = {"step_classifier": ("rl", prm_options(prm_dir))}
    if cfg.lifecycle.rl_baseline:
        runs[cfg.lifecycle.rl_baseline] = (f"rl-{cfg.lifecycle.rl_baseline}", {})
    out = {}
    for judge, (name, options) in runs.items():
        log.info(f"RL: {cfg.algorithm.name}, {cfg.trainer.max_steps} steps judged by {judge} "
                 f"(runs/{cfg.name}/{name})")
        summary = train(rl_config(cfg, judge, options, name))
        route_library_logs(cfg.run_dir / "logs" / "driver.log")  # the RL run had moved them to its own
        out[judge] = {k: summary[k] for k in ("eval_accuracy_before", "eval_accuracy_after", "samples_trained",
                                                "judge_errors", "wall_seconds")}
        log.info(f"RL judged by {judge}: held-out accuracy {summary['eval_accuracy_before']:.3f} → "
                 f"{summary['eval_accuracy_after']:.3f}")
    return out


def run(cfg: Config, overwrite: bool, started: ExitStack) -> dict:
    from cluster.model_prep import prepare_model

    t0 = time.monotonic()
    run_dir = RunDir.open(cfg, overwrite=overwrite)  # refuses an earlier run unless --overwrite; locked
    started.callback(run_dir.close)
    rl_names = ["rl", *([f"rl-{cfg.lifecycle.rl_baseline}"] if cfg.lifecycle.rl_baseline else [])]
    if overwrite:
        for name in (*OUTPUTS, *rl_names):
            target = cfg.run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    log = open_stage(cfg)
    train_rows, eval_rows = load_data(cfg, log)
    policy = str(prepare_model(cfg, train_rows, log.info, log.progress))
    seconds, summary = {}, {"name": cfg.name, "policy": policy}

    def stage(name: str, fn, *args):
        t = time.monotonic()
        with ExitStack() as actors:  # each stage stops its actors before the next starts
            summary[name] = fn(*args, actors) if name in ("label", "prm") else fn(*args)
        seconds[name] = round(time.monotonic() - t, 1)

    data, prm_dir = prm_paths(cfg)
    if not cfg.prm.data:  # given labelled data, the PRM trains on it instead
        stage("label", label, cfg, policy, train_rows, label_path(cfg), log)
    stage("prm", train_prm, cfg, cfg.prm.init or policy, data, prm_dir, log)
    stage("evaluate", evaluate, cfg, policy, prm_dir, eval_rows, log)
    if cfg.lifecycle.rl:
        stage("rl", rl_runs, cfg, prm_dir, log)
    summary.update(stage_seconds=seconds, wall_seconds=round(time.monotonic() - t0, 1))
    write_summary(cfg.run_dir, summary)
    log.info(f"done in {summary['wall_seconds']:.0f}s ({seconds}); summary in {cfg.run_dir / 'summary.json'}")
    return summary


if __name__ == "__main__":
    sys.exit(stage_main("cluster.prm_lifecycle", __doc__, run))
