"""Answer grading: agreement and answers/s, plain math-verify vs GradingPool, on the same pairs.

Three sets of (response, gold) pairs:
- `gsm8k`: GSM8K test solutions as written (`#### 18`; ../shared/data/gsm8k_test.jsonl, else
  synthetic ones), every other one with a wrong final number. GradingPool settles these plain
  integers in-process (math-verify's own patterns read them), without a worker.
- `latex`: the same with the final answer rewritten as `\\boxed{\\frac{36}{2}}`, so every row goes
  through math-verify in the pool's worker processes.
- `varied`: the agreement set of tests/grading_pairs.py (MATH-500 and GSM8K answers stated in
  ~35 ways, right and wrong; every `step`-th pair).
`latex+1%bad` mixes 1% pathological towers such as `\\boxed{\\dfrac{5^{5^{5^{5^5}}}}{2}}` into the
latex rows. The plain baseline (math_verify.parse + verify in one process, its own default
timeouts) hangs on those, so it runs on the other sets only; the pool kills and replaces the
stuck worker after `timeout_s`. Agreement: of the pairs plain math-verify calls right, the share
the pool calls right too, and the reverse. Pool latency is per `grade()` call from `num_workers`
threads (what `grade_many` does). Sides alternate order every repetition.

    PYTHONPATH=. .venv/bin/python -m benchmarks.grading --quick
"""
from __future__ import annotations

import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import Result, finish, median, parse_mode, percentile

GSM8K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gsm8k_test.jsonl"
SETTINGS = {"quick": {"rows": 200, "step": 8, "reps": 3}, "full": {"rows": 600, "step": 1, "reps": 5}}
TIMEOUT_S = 5.0  # the pool's per-answer limit, as in the default job
TOWERS = [r"\dfrac{5^{5^{5^{5^5}}}}{2}", r"\dfrac{7^{7^{7^{7^7}}}}{3}", r"\dfrac{9^{9^{9^{9^9}}}}{4}"]
_HASH = re.compile(r"####\s*(.+)\s*$")
COMPARED = ("gsm8k", "latex", "varied")  # plain math-verify finishes these


def load_rows(count: int) -> tuple[list[tuple[str, str]], str]:
    """(response, gold) pairs; every other response states a wrong final number."""
    rng = random.Random(0)
    if GSM8K.exists():
        solutions = [json.loads(line)["answer"] for line in GSM8K.read_text().splitlines()[:count]]
        source = str(GSM8K.name)
    else:
        solutions = []
        for _ in range(count):
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            solutions.append(f"She has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}")
        source = "synthetic (gsm8k_test.jsonl absent)"
    pairs = []
    for i, sol in enumerate(solutions):
        gold = _HASH.search(sol).group(1).replace(",", "").strip()
        stated = gold if i % 2 == 0 else str(int(float(gold)) + 1)
        pairs.append((_HASH.sub(lambda _: f"#### {stated}", sol), gold))
    return pairs, source


def varied_pairs(step: int) -> list[tuple[str, str]]:
    from tests.grading_pairs import agreement_pairs
    return [(p["response"], p["gold"]) for p in agreement_pairs()[::step]]


def as_latex(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for response, gold in pairs:
        stated = _HASH.search(response).group(1)
        value = int(float(stated)) if float(stated).is_integer() else stated
        boxed = rf"\boxed{{\frac{{{2 * value}}}{{2}}}}" if isinstance(value, int) else rf"\boxed{{{value}}}"
        out.append((_HASH.sub(lambda _: f"The answer is {boxed}", response), gold))
    return out


def with_pathological(pairs: list[tuple[str, str]], share: float = 0.01) -> list[tuple[str, str]]:
    out = list(pairs)
    count = max(1, round(len(pairs) * share))
    for k, i in enumerate(random.Random(1).sample(range(len(pairs)), count)):
        response, gold = out[i]
        out[i] = (re.sub(r"\\boxed\{.*\}", lambda _: rf"\boxed{{{TOWERS[k % len(TOWERS)]}}}", response), gold)
    return out


def plain_grade(response: str, gold: str) -> bool:
    from math_verify import parse, verify
    return bool(verify(parse(gold), parse(response)))


def run_plain(pairs: list[tuple[str, str]]) -> tuple[float, list[float], list[bool]]:
    latencies, verdicts = [], []
    start = time.perf_counter()
    for pair in pairs:
        t0 = time.perf_counter()
        verdicts.append(plain_grade(*pair))
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - start, latencies, verdicts


def run_pool(pool, pairs: list[tuple[str, str]]) -> tuple[float, list[float], list[bool]]:
    def one(pair):
        t0 = time.perf_counter()
        grade = pool.grade(*pair)
        return time.perf_counter() - t0, grade.correct

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=pool.num_workers) as ex:
        results = list(ex.map(one, pairs))
    return time.perf_counter() - start, [r[0] for r in results], [r[1] for r in results]


def agreement(plain: list[bool], pool: list[bool]) -> dict:
    both = sum(a and b for a, b in zip(plain, pool))
    return {"plain_right": sum(plain), "pool_right": sum(pool),
            "pool_keeps_plain_right": both / max(sum(plain), 1),
            "plain_keeps_pool_right": both / max(sum(pool), 1),
            "same_verdict": sum(a == b for a, b in zip(plain, pool)) / max(len(plain), 1)}


def run(mode: str) -> Result:
    import logging

    from reward_service.grading import GradingPool

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    cfg = SETTINGS[mode]
    clean, source = load_rows(cfg["rows"])
    data = {"gsm8k": clean, "latex": as_latex(clean), "varied": varied_pairs(cfg["step"])}
    data["latex+1%bad"] = with_pathological(data["latex"])
    pools = {k: GradingPool(num_workers=k, timeout_s=TIMEOUT_S) for k in (1, 2)}
    for pool in pools.values():  # start-up (importing sympy) is not grading time
        pool.grade_many(data["latex"][:4])

    sides = {}
    for style in COMPARED:
        sides[f"plain/{style}"] = (1, lambda rows=data[style]: run_plain(rows), data[style])
    for style in data:
        for k, pool in pools.items():
            sides[f"pool{k}/{style}"] = (k, lambda rows=data[style], p=pool: run_pool(p, rows), data[style])
    walls: dict[str, list[float]] = {name: [] for name in sides}
    lats: dict[str, list[float]] = {name: [] for name in sides}
    verdicts: dict[str, list[bool]] = {}
    try:
        for rep in range(cfg["reps"]):
            names = list(sides)
            random.Random(rep).shuffle(names)  # a different order every repetition
            for name in names:
                wall, latencies, got = sides[name][1]()
                walls[name].append(wall)
                lats[name].extend(latencies)
                verdicts[name] = got
        timeouts = {k: p.timeouts for k, p in pools.items()}
    finally:
        for pool in pools.values():
            pool.close()

    table = {}
    for name, (cores, _, rows) in sides.items():
        rate = len(rows) / median(walls[name])
        table[name] = {"answers_per_s": rate, "answers_per_s_per_core": rate / min(cores, 2),
                       "p50_ms": 1e3 * percentile(lats[name], 50), "p99_ms": 1e3 * percentile(lats[name], 99),
                       "max_ms": 1e3 * max(lats[name])}
    agree = {style: agreement(verdicts[f"plain/{style}"], verdicts[f"pool1/{style}"]) for style in COMPARED}
    speed = {style: table[f"pool1/{style}"]["answers_per_s_per_core"] / table[f"plain/{style}"]["answers_per_s_per_core"]
             for style in COMPARED}
    return Result(
        name="grading", ratio_name="pool(1 worker) / plain math-verify answers/s per core, varied pairs",
        ratio=speed["varied"], target="none", met=None,
        measurements={"rows": source, "rows_per_rep": {s: len(data[s]) for s in data}, "reps": cfg["reps"],
                      "pool_timeout_s": TIMEOUT_S, **table, "agreement_plain_vs_pool": agree,
                      "speed_ratio_pool1_vs_plain_per_core": speed, "pool_timeouts_total": timeouts},
        notes=["plain runs on gsm8k, latex and varied only: it hangs on the towers",
               "answers/s per core = answers/s / min(workers, 2)"],
    )


if __name__ == "__main__":
    args = parse_mode(__doc__.splitlines()[0])
    finish(run(args.mode), args.json)
