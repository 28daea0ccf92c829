"""Credit assignment of every advantage estimator on the shortcut task, measured without training.

1. The warm-started policy of configs/shortcut.yaml (the job's own build, cached) samples G
   solutions for each of `habit_problems` training problems with vLLM, and greedy ones for the
   held-out problems; `core.shortcut_task.read_solution` turns them into its habits: how often it
   merges two operations where it can, how often a merged or a one-operation claim is wrong, and
   how often a reflection follows a wrong or a right merge.
2. Groups of G solutions to other problems are written with those habits
   (`core.shortcut_task.sample_moves`), so every faulty step is known by construction: right,
   wrong, and corrected-with-reflection solutions at the policy's own rates; and again with the
   habits the task is built to leave (`DESIGNED`), which do not depend on the warm start.
3. The real tool judge (one step per line), grader and Scorer judge them, and
   `reward_service.credit` counts per algorithm the faulty tokens blamed (advantage < 0), the
   sound tokens spared (>= 0) and the mutual information between the two (bits, and as a share
   of H(faulty)).

    PYTHONPATH=. .venv/bin/python -m benchmarks.credit_assignment --quick|--full [--json F]
"""
from __future__ import annotations

import math
import random
import time
from collections import Counter

from benchmarks.common import SHORTCUT_CONFIG, Result, default_warm_model, finish, parse_mode
from core.shortcut_task import Habits

ALGORITHMS = ["grpo", "step_grpo", "reasonflux", "tpgrpo_steps", "tpgrpo_static", "tpgrpo"]
DESIGNED = Habits(shortcut=0.75, shortcut_error=0.3, careful_error=0.05, reflect_wrong=0.3, reflect_right=0.0)
SETTINGS = {
    "quick": {"habit_problems": 64, "greedy_problems": 100, "groups": 150, "G": 8},
    "full": {"habit_problems": 200, "greedy_problems": 200, "groups": 1000, "G": 8},
}


def measure_habits(engine, prompt, rows: list[dict], samples: int, temperature: float,
                   seed: int = 0, max_tokens: int = 224):
    """(HabitCounts, accuracy) of `samples` completions per row from a `core.engine.VLLMEngine`."""
    from core.arith_task import is_correct
    from core.shortcut_task import HabitCounts, parse_problem, read_solution

    ids = [engine.tokenizer(prompt(r["problem"]), add_special_tokens=False)["input_ids"] for r in rows]
    outputs = engine.generate(ids, n=samples, max_tokens=max_tokens, temperature=temperature, seed=seed)
    counts, right = HabitCounts(), 0
    for row, completions in zip(rows, outputs):
        problem = parse_problem(row["problem"])
        for c in completions:
            counts.add(read_solution(problem, c.text))
            right += is_correct(c.text, row["answer"])
    return counts, right / (len(rows) * samples)


def line_reliability(engine, prompt, rows: list[dict]) -> dict:
    """Greedy result of every line of clean solutions (careful ones, and ones with a single merge
    at each possible place), each given the right lines before it: how often a careful and a
    merged line is right when nothing before it went wrong; and P(merge) at the first line."""
    from core.shortcut_task import SHORTCUT, Move, parse_problem, write_solution

    prompts, wants, kinds, firsts = [], [], [], []
    for row in rows:
        problem = parse_problem(row["problem"])
        n = len(problem.ops)
        for merge_at in range(-1, n - 1):  # -1: no merge
            moves, i = [], 0
            while i < n:
                moves.append(Move(i == merge_at))
                i += 2 if i == merge_at else 1
            solution = write_solution(problem, moves)
            lines = solution.text.split("\n")
            for k, line in enumerate(lines[:-1]):
                head, result = line.rsplit("= ", 1)
                prompts.append(prompt(row["problem"]) + "\n".join([*lines[:k], head + "= "]))
                wants.append(result)
                kinds.append(solution.kinds[k])
        firsts.append(prompt(row["problem"]) + "Step a")
    encode = [engine.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    got = [c[0].text.split("\n")[0].strip() for c in engine.generate(encode, n=1, max_tokens=4, temperature=0.0)]
    out = {}
    for kind in sorted(set(kinds)):
        hits = [g == w for g, w, k in zip(got, wants, kinds) if k == kind]
        out[f"{'merged' if kind == SHORTCUT else kind}_line_right"] = sum(hits) / len(hits)
    # P(",") against P(":") after "Step a": the decision token of the first line
    heads = [engine.tokenizer(p, add_special_tokens=False)["input_ids"] for p in firsts]
    comma, colon = engine.tokenizer.convert_tokens_to_ids([",", ":"])
    merge = [lp[-1] for lp in engine.prompt_logprobs([h + [comma] for h in heads])]
    work = [lp[-1] for lp in engine.prompt_logprobs([h + [colon] for h in heads])]
    out["merge_probability_first_line"] = sum(1 / (1 + math.exp(w - m)) for m, w in zip(merge, work)) / len(heads)
    return out


def habits_row(counts, accuracy: float) -> dict:
    h = counts.habits()
    return {"accuracy": accuracy, "merge_rate": h.shortcut, "merge_wrong": h.shortcut_error,
            "careful_wrong": h.careful_error, "reflect_after_wrong_merge": h.reflect_wrong,
            "reflect_after_right_merge": h.reflect_right, "step_lines": counts.careful + counts.shortcuts,
            "off_problem_lines": counts.off_problem, "other_lines": counts.other_lines}


def policy_habits(model_dir: str, train_rows: list[dict], eval_rows: list[dict], s: dict) -> dict:
    """The warm-started policy's habits, sampled (T = 1, as in training) and greedy."""
    from core.engine import VLLMEngine
    from core.prompts import PromptFormat

    engine = VLLMEngine(model_dir, dtype="float32", max_model_len=512, kv_cache_gb=0.5)
    try:
        prompt = PromptFormat.for_model(model_dir)
        sampled = measure_habits(engine, prompt, train_rows[:s["habit_problems"]], s["G"], 1.0)
        greedy = measure_habits(engine, prompt, eval_rows[:s["greedy_problems"]], 1, 0.0)
        lines = line_reliability(engine, prompt, eval_rows[:s["greedy_problems"]])
    finally:
        engine.shutdown()
    return {"sampled": sampled, "greedy": greedy, "lines": lines}


def judged_groups(problems, habits, G: int, tokenizer, seed: int = 0):
    """G solutions per problem written with `habits`, judged for real: (groups, composition)."""
    from core.engine import decode_with_offsets
    from core.shortcut_task import REFLECTION, sample_moves, write_solution
    from reward_service.credit import judged_sample
    from reward_service.grading import GradingPool
    from reward_service.scorer import Scorer

    rng = random.Random(f"credit-{seed}")
    solutions = [[write_solution(p, sample_moves(rng, p, habits)) for _ in range(G)] for p in problems]
    rows = [{"problem": p.text, "response_text": s.text, "gold_answer": str(p.answer)}
            for p, group in zip(problems, solutions) for s in group]
    with GradingPool(num_workers=1, timeout_s=5.0) as grader:
        scorer = Scorer("tool", "lines", grader=grader)
        verdicts = scorer.score_many(rows)
    kinds: Counter = Counter()
    groups, k = [], 0
    for group in solutions:
        judged = []
        for s in group:
            v = verdicts[k]
            k += 1
            if v.judge_error:
                raise RuntimeError(f"judging a constructed solution failed: {v.judge_error}\n{s.text}")
            _, offsets = decode_with_offsets(tokenizer, tokenizer(s.text, add_special_tokens=False)["input_ids"])
            judged.append((judged_sample(v, s.text, offsets), [s.line_spans[i] for i in s.faulty_lines]))
            kinds["wrong" if not s.correct else "corrected" if REFLECTION in s.kinds and s.faulty_lines
                  else "detour" if REFLECTION in s.kinds else "clean"] += 1
        right = sum(s.correct for s in group)
        kinds["groups all right" if right == G else "groups all wrong" if right == 0 else "groups mixed"] += 1
        groups.append(judged)
    return groups, dict(kinds)


def main() -> None:
    args = parse_mode(__doc__.splitlines()[0])
    s = SETTINGS[args.mode]
    t0 = time.monotonic()
    from transformers import AutoTokenizer

    from core.config import load_config
    from core.datasets import load_dataset
    from core.shortcut_task import parse_problem
    from reward_service.credit import credit_tables

    cfg = load_config(SHORTCUT_CONFIG)
    train = load_dataset("synthetic", synthetic=cfg.data.synthetic, split="train").rows
    evals = load_dataset("synthetic", synthetic=cfg.data.synthetic, split="eval").rows
    model_dir = default_warm_model(SHORTCUT_CONFIG)
    measured = policy_habits(model_dir, train, evals, s)
    # Two sets of groups: written with the habits the warm policy shows, and with the habits the
    # task is built to leave (merge at 3 of 4 chances, 30% of merges wrong and 30% of those
    # corrected, careful lines rarely wrong), which do not depend on how well the warm start went.
    sources = {"policy": measured["sampled"][0].habits(), "designed": DESIGNED}
    # problems for the constructed groups: training problems the habits were not measured on
    problems = [parse_problem(r["problem"]) for r in train[-s["groups"]:]]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows, compositions = {}, {}
    for source, habits in sources.items():
        groups, compositions[source] = judged_groups(problems, habits, s["G"], tokenizer)
        tables = credit_tables(groups, ALGORITHMS, alpha=cfg.algorithm.alpha, beta=cfg.algorithm.beta)
        rows[source] = {name: tables[name].summary() for name in ALGORITHMS}
        print(f"\ngroups written with the {source} habits {vars(habits)}")
        print(f"{'algorithm':<14} {'faulty blamed':>13} {'sound spared':>12} {'MI bits':>8} {'MI/H':>6}")
        for name, r in rows[source].items():
            print(f"{name:<14} {r['faulty_blamed']:>13.3f} {r['sound_spared']:>12.3f} "
                  f"{r['mutual_information_bits']:>8.4f} {r['information_share']:>6.3f}")
    grpo_mi, tp_mi = (rows["designed"][a]["mutual_information_bits"] for a in ("grpo", "tpgrpo"))
    measurements = {
        "settings": s, "warm_model": model_dir,
        "policy_sampled": habits_row(*measured["sampled"]), "policy_greedy": habits_row(*measured["greedy"]),
        "policy_lines_greedy": measured["lines"],
        "habits_used": {k: vars(h) for k, h in sources.items()}, "composition": compositions, "algorithms": rows,
        "seconds": round(time.monotonic() - t0)}
    finish(Result("credit_assignment", "tpgrpo MI / grpo MI, designed habits (sign of advantage vs faulty token)",
                  tp_mi / grpo_mi if grpo_mi else float("nan"), "none (informative)", None, measurements),
           args.json)


if __name__ == "__main__":
    main()
