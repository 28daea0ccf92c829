"""`check_judge_options`: every registered judge's options are checked by name and type before
anything is built (no engine, no process, no vLLM import), with a "did you mean" for typos."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reward_service.judges import known_judges
from reward_service.judges.registry import check_judge_options
from reward_service.llm import HttpLLM

ROOT = Path(__file__).resolve().parents[1]
READY = HttpLLM("http://127.0.0.1:9/v1")  # a ready LLM object (never contacted here)

GOOD = {
    "tool": [{}, {"max_step_chars": 1000}],
    "tpgrpo": [{"model": "/models/judge", "samples": 4, "temperature": 1, "max_tokens": 64,
                "seed": None, "on_malformed": "error", "max_model_len": 2048, "kv_cache_gb": 0.5,
                "prompt_template": "<user>{prompt}</user>", "enable_prefix_caching": True},
               {"endpoint": "https://judge:8443/v1", "model_name": "big", "timeout_s": 30}],
    "rprm": [{"endpoint": "http://judge:8000/v1", "samples": 2, "timeout_s": 30.5, "retries": 1,
              "backoff_s": 0, "api_key": "k", "max_batch": 8, "max_reply_mb": 8},
             {"model": "/models/judge", "dtype": "bfloat16", "gpu_memory_utilization": 0.5}],
    "self": [{"llm": READY, "on_malformed": "accept", "samples": 5},
             {"model": "/m", "cpu_threads": 2, "enforce_eager": None}],
    "montecarlo": [{"model": "/models/policy", "samples": 8, "temperature": 1.0,
                    "problem_template": "Q: {problem}\nA:", "grade_timeout_s": 2},
                   {"model": "/models/policy", "prompt_style": "chat", "prompt_instruction": None,
                    "prompt_system": "Reason step by step."}],
    "step_classifier": [{"model": "/models/prm", "style": "shepherd", "step_tag": "ки",
                         "good_token": "+", "bad_token": "-", "max_model_len": 4096,
                         "dtype": "float32", "kv_cache_gb": 1}],
    "http": [{"endpoint": "http://judge:8000/v1", "method": "rprm", "samples": 2},
             {"endpoint": "http://judge:8000/v1", "model_name": "m", "on_malformed": "accept",
              "method": "self"}],
}

BAD = [
    ("tool", {"max_step_char": 10}, ["unknown option 'max_step_char'", "'max_step_chars'"]),
    ("tool", {"max_step_chars": "10"}, ["'max_step_chars' must be int, got str '10'"]),
    ("tpgrpo", {"model": "/m", "sample": 4}, ["unknown option 'sample'", "did you mean 'samples'"]),
    ("tpgrpo", {"model": "/m", "samples": "4", "temperature": "hot"},
     ["'samples' must be int", "'temperature' must be float"]),
    ("tpgrpo", {"model": "/m", "on_malformed": "accept"}, ["'on_malformed' must be one of"]),
    ("tpgrpo", {"model": "/m", "max_model_length": 4096},
     ["unknown option 'max_model_length'", "'max_model_len'"]),
    ("tpgrpo", {"model": "/m", "enable_prefix_cache": True},
     ["'enable_prefix_cache'", "'enable_prefix_caching'"]),  # a vLLM engine argument
    ("rprm", {"endpoint": "http://x/v1", "on_malformed": "error"},
     ["unknown option 'on_malformed'"]),  # rprm reads every reply
    ("rprm", {"endpoint": "http://x/v1", "timeout": 5}, ["'timeout'", "'timeout_s'"]),
    ("rprm", {"endpoint": "http://x/v1", "kv_cache_gb": 1}, ["unknown option 'kv_cache_gb'"]),
    ("rprm", {"model": "/m", "kv_cache_gb": "lots"}, ["'kv_cache_gb' must be float"]),
    ("rprm", {"model": "/m", "endpoint": "http://x/v1"}, ["exactly one of"]),
    ("rprm", {}, ["exactly one of"]),
    ("rprm", {"endpoint": "file:///etc/passwd"}, ["http"]),
    ("self", {"llm": READY, "max_model_len": 5}, ["unknown option 'max_model_len'"]),
    ("montecarlo", {"model": "/m", "samples": True}, ["'samples' must be int or null, got bool"]),
    ("montecarlo", {"model": "/m", "grade_timeout": 1}, ["'grade_timeout_s'"]),
    ("montecarlo", {"model": "/m", "prompt_style": "jinja"}, ["'prompt_style' must be one of"]),
    ("montecarlo", {"model": "/m", "prompt_instructions": "x"}, ["'prompt_instruction'"]),
    ("step_classifier", {"model": "/m", "style": 3}, ["'style' must be str, got int"]),
    ("step_classifier", {"model": "/m", "samples": 4}, ["unknown option 'samples'"]),
    ("http", {"method": "rprm"}, ["endpoint"]),
    ("http", {"endpoint": "http://x/v1", "method": "tool"}, ["method"]),
    ("http", {"endpoint": "http://x/v1", "method": "rprm", "sampels": 2}, ["'samples'"]),
    ("http", {"endpoint": "http://x/v1", "method": "self", "on_malformed": "fallback"},
     ["'on_malformed' must be one of"]),
    ("tpgrpp", {}, ["unknown judge 'tpgrpp'", "did you mean 'tpgrpo'"]),
]


def test_every_registered_judge_has_cases():
    builtin = {name for name in known_judges() if not name.startswith("test-")}
    assert builtin == set(GOOD)


@pytest.mark.parametrize("name, options", [(n, o) for n, cases in GOOD.items() for o in cases])
def test_good_options_pass(name, options):
    check_judge_options(name, options)


@pytest.mark.parametrize("name, options, phrases", BAD)
def test_bad_options_are_named(name, options, phrases):
    with pytest.raises(ValueError) as caught:
        check_judge_options(name, options)
    message = str(caught.value)
    for phrase in phrases:
        assert phrase in message, message


def test_checking_builds_nothing():
    # A fresh interpreter: the check reads signatures only, so vLLM is never imported, no
    # engine is started and the model directory need not exist.
    code = ("import sys\n"
            "from reward_service.judges.registry import check_judge_options as c\n"
            "c('rprm', {'model': '/no/such/dir', 'max_model_len': 512,\n"
            "           'max_num_batched_tokens': 4096})\n"
            "c('step_classifier', {'model': '/does/not/exist', 'style': 'classifier'})\n"
            "assert 'vllm' not in sys.modules, 'vllm was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
