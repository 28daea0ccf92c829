"""The label job: step labels for a PRM, made by the run's own actors.

    python -m cluster.label CONFIG.yaml [--set key=value ...] [--overwrite]

The rollout actors sample `label.samples_per_problem` solutions for each of `label.problems`
training problems; the judge actors split each into steps (`judge.splitter`) and label every
step with `label.method`:

- `montecarlo` (Math-Shepherd, MM-PRM): `label.completions` completions from each step's
  prefix, sampled by the same rollout actors (actors/rollout_llm.py) and graded against the
  gold answer; a step's soft label is the fraction that reach it (the last step's is the
  solution's own outcome), its label is soft > `label.threshold` (0: any completion reaches
  it, Math-Shepherd's hard estimate);
- any other registered judge (`tool`: TaTToo-style, sympy checks each step's claims), with
  `label.options`; its step scores are the soft labels.

Work is dealt as in training (cluster/pipeline.py): a dead actor is replaced and its work
re-issued. The judged solutions go to a `LabelSink` in place of the training buffer, which
writes them to `label.output` (default `<run dir>/labels.parquet`) in TRL's stepwise layout
(core/stepwise.py). A solution whose judging failed costs that row only, counted by reason.
Progress (solutions and steps labelled per second) is on the console; a record per batch and
the totals go to the run's metrics.jsonl.
"""
from __future__ import annotations

import sys
import time
from collections import Counter, deque
from contextlib import ExitStack
from pathlib import Path

import pyarrow.parquet as pq
import ray

from actors.judge import JudgeWorker
from actors.rollout import RolloutWorker
from actors.rollout_llm import RolloutLLM
from cluster.actor_group import ActorGroup, get, get_together
from cluster.pipeline import Pipeline, Weights
from cluster.prm_stage import open_stage, reserve_roles, stage_main
from cluster.progress import Progress
from cluster.report import RunLog
from cluster.resources import release, rollout_engine_kwargs
from cluster.train import load_data, on_exit, to_prompts
from core.config import Config
from core.prompts import PromptFormat
from core.stepwise import label_row, to_table

MONTECARLO = "montecarlo"


class LabelSink:
    """Takes the judge actors' scored tables where training has its buffer: every labelled
    solution becomes a stepwise row appended to `path`; one whose judging failed is counted."""

    def __init__(self, path: str, judge: str, threshold: float):
        self.path, self.judge, self.threshold = Path(path), judge, threshold
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.writer = None
        self.counts = Counter()
        self.lost: Counter = Counter()  # solutions not labelled, by reason
        self.first_error: dict[str, str] = {}  # the first full message of each reason

    def ready(self) -> bool:
        return True

    def add(self, summary: dict, tables: list) -> dict:
        rows = []
        for table in tables:
            for scored in (ray.get(table) if isinstance(table, ray.ObjectRef) else table).to_pylist():
                self.counts["solutions"] += 1
                if not scored["step_spans"] or len(scored["step_scores"] or []) != len(scored["step_spans"]):
                    reason, message = lost_reason(scored)
                    self.lost[reason] += 1
                    self.first_error.setdefault(reason, message)
                    continue
                rows.append(label_row(scored, self.judge, self.threshold))
        if rows:
            table = to_table(rows)
            if self.writer is None:
                self.writer = pq.ParquetWriter(str(self.partial), table.schema)
            self.writer.write_table(table)
            self.counts["labelled"] += len(rows)
            self.counts["steps"] += sum(len(r["labels"]) for r in rows)
            self.counts["steps_right"] += sum(sum(r["labels"]) for r in rows)
        return self.totals()

    def totals(self) -> dict:
        return {**self.counts, "lost": dict(self.lost), "lost_first_error": dict(self.first_error)}

    def close(self) -> dict:
        """Finish the file (written under a temporary name and renamed when complete)."""
        if self.writer is not None:
            self.writer.close()
            self.partial.rename(self.path)
        return self.totals()


def lost_reason(scored: dict) -> tuple[str, str]:
    """(the kind of reason a solution was not labelled, the whole message)."""
    if not (scored.get("response_text") or "").strip():
        return "empty response", "the policy wrote nothing"
    error = scored.get("judge_error") or "no steps"
    return error.split(":")[0], error


def judge_kwargs(cfg: Config, rollout: ActorGroup | None, model_dir: str, audit_dir: Path | None) -> dict:
    """The judge actors' settings for labelling: `label.method` and its options; a `montecarlo`
    judge without an LLM of its own samples from the rollout actors with the policy's prompt."""
    j, lc, p = cfg.judge, cfg.label, cfg.prompt
    options = dict(lc.options)
    if lc.method == MONTECARLO and not any(options.get(k) for k in ("llm", "model", "endpoint")):
        options = {"samples": lc.completions, "temperature": cfg.rollout.temperature,
                   "max_tokens": cfg.rollout.max_new_tokens, "seed": cfg.seed, "prompt_style": p.style,
                   "problem_template": p.template, "prompt_instruction": p.instruction,
                   "prompt_system": p.system, **options}
        if rollout is not None:
            options["llm"] = RolloutLLM(rollout.actors, model_dir, cfg.trainer.call_timeout_s,
                                        str(audit_dir) if audit_dir else None)
    return dict(backend=lc.method, splitter=j.splitter, grader_workers=j.grader_workers,
                grader_timeout_s=j.grader_timeout_s, require_answer=j.require_answer, run_name=cfg.name,
                **options)


def start_rollout(cfg: Config, model_dir: str, placement, timeout: float) -> ActorGroup:
    r = cfg.rollout
    return ActorGroup("rollout", RolloutWorker, r.num_actors, timeout, placement.options, args=(model_dir,),
                      kwargs=dict(dtype=cfg.model.dtype, seed=cfg.seed, max_model_len=cfg.model.max_model_len,
                                  tensor_parallel_size=r.tensor_parallel_size, kv_cache_gb=r.kv_cache_gb,
                                  gpu_memory_utilization=r.gpu_memory_utilization, run_name=cfg.name,
                                  **rollout_engine_kwargs(cfg)))


def label(cfg: Config, model_dir: str, train_rows: list[dict], out: Path, log: RunLog,
          started: ExitStack) -> dict:
    """Label `label.problems` of `train_rows` into `out`; returns the totals."""
    lc, timeout = cfg.label, cfg.trainer.call_timeout_s
    problems = train_rows[:lc.problems]
    # Only the rollout and judge roles: the label job starts no learner.
    placed = reserve_roles(cfg, ("rollout", "judge"))
    on_exit(started, log.warn, "placement groups", release, placed)
    rollout = start_rollout(cfg, model_dir, placed["rollout"], timeout)
    on_exit(started, log.warn, "rollout actors", rollout.shutdown)
    audit = out.parent / "label_rollouts" if lc.method == MONTECARLO else None
    judges = ActorGroup("judge", JudgeWorker, cfg.judge.num_actors, timeout, placed["judge"].options,
                        kwargs=judge_kwargs(cfg, rollout, model_dir, audit))
    on_exit(started, log.warn, "judge actors", judges.shutdown)
    sink = ray.remote(LabelSink).remote(str(out), lc.method, lc.threshold)
    on_exit(started, log.warn, "label sink", ray.kill, sink)
    get_together([(group, "ready", group.call_all("ready")) for group in (rollout, judges)])
    get(sink.ready.remote(), timeout, "label sink")

    prompt = PromptFormat.for_model(model_dir, **cfg.prompt.model_dump())
    pipeline = Pipeline(cfg, rollout, judges, sink, Weights(), log=log.warn)
    what = f"{lc.samples_per_problem} solutions each, steps labelled by {lc.method}"
    log.info(f"labelling {len(problems)} problems ({what}) with {cfg.rollout.num_actors} rollout and "
             f"{cfg.judge.num_actors} judge actors into {out}")
    bar = Progress("label", len(problems), unit="problems", stream=log.stream,
                   on_close=lambda b: log.logger.info(b.line()))
    log.bar = bar  # console lines are printed above it
    t0, done = time.monotonic(), 0

    def collected(size: int, batch) -> None:
        nonlocal done
        pipeline.collect(batch)
        done += size
        totals = get(sink.totals.remote(), timeout, "label sink")
        seconds = time.monotonic() - t0
        rate = {"solutions_per_s": totals.get("labelled", 0) / seconds, "steps_per_s": totals.get("steps", 0) / seconds}
        log.record("label", problems=done, seconds=round(seconds, 2), **totals, **rate)
        bar.update(done, f"{totals.get('steps', 0)} steps | {rate['steps_per_s']:.1f} steps/s")

    inflight: deque = deque()
    for t in range(0, len(problems), lc.problems_per_call):  # a batch ahead: engines never wait for judges
        chunk = problems[t:t + lc.problems_per_call]
        inflight.append((len(chunk), pipeline.submit(t, to_prompts(chunk, f"label{t}", prompt),
                                                     n=lc.samples_per_problem)))
        if len(inflight) > 1:
            collected(*inflight.popleft())
    while inflight:
        collected(*inflight.popleft())
    bar.close()
    log.bar = None
    totals = get(sink.close.remote(), timeout, "label sink")
    seconds = time.monotonic() - t0
    tokens = sum(s["tokens_generated"] for s in pipeline.ask_all(rollout, "stats"))
    summary = {"method": lc.method, "problems": len(problems), "output": str(out), "seconds": round(seconds, 1),
               **totals, "steps_per_s": totals.get("steps", 0) / seconds, "tokens_generated": int(tokens),
               "actor_restarts": dict(pipeline.restarts)}
    if totals["lost"]:
        first = "; ".join(f"{k}: {v[:200]}" for k, v in totals["lost_first_error"].items())
        log.warn(f"label: {sum(totals['lost'].values())} solutions not labelled ({totals['lost']}; first of each: {first})")
    log.info(f"labelled {totals.get('labelled', 0)} solutions, {totals.get('steps', 0)} steps "
             f"({summary['steps_per_s']:.1f} steps/s, {tokens:,.0f} tokens generated) in {seconds:.0f}s")
    return summary


def run(cfg: Config, overwrite: bool, started: ExitStack) -> dict:
    """The label job on its own: the policy (cluster/model_prep.py), the actors, the file."""
    from cluster.model_prep import prepare_model

    out = label_path(cfg)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; --overwrite to replace it, or --set label.output=OTHER")
    log = open_stage(cfg)
    train_rows, _ = load_data(cfg, log)
    model_dir = str(prepare_model(cfg, train_rows, log.info, log.progress))
    return label(cfg, model_dir, train_rows, out, log, started)


def label_path(cfg: Config) -> Path:
    return Path(cfg.label.output) if cfg.label.output else cfg.run_dir / "labels.parquet"


if __name__ == "__main__":
    sys.exit(stage_main("cluster.label", __doc__, run))
