"""step_classifier on tiny local PRMs through vLLM's pooling runner, checked against the
reference computation in transformers: Qwen2.5-Math-PRM style (`<extra_0>`, 2-label head) and
Math-Shepherd style (`ки`, P(+) vs P(-) of the causal LM)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Qwen2Model

from core.tiny_model import build_tokenizer
from reward_service.grading import GradingPool
from reward_service.judges.base import StepRequest
from reward_service.judges.step_classifier import StepClassifierJudge, detect_style
from reward_service.scorer import Scorer
from reward_service.steps import split_lines
from tests.counting import Counting

pytestmark = pytest.mark.timeout(600)
CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
PROBLEM = "Janet has 16 eggs. She eats 3 and bakes with 4. How many are left?"
RESPONSE = "Step 1: 16 - 3 = 13.\nStep 2: 13 - 4 = 9.\nStep 3: The answer is 9.\n"


def _tokenizer(out, chat: bool):
    """The tiny character tokenizer plus the step tags (`<extra_0>` special, as in Qwen)."""
    build_tokenizer(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    tok.add_tokens(["ки"])
    if chat:
        tok.chat_template = CHAT
    tok.save_pretrained(str(out))
    return tok


def _config(tok, architecture: str) -> Qwen2Config:
    config = Qwen2Config(
        vocab_size=-(-len(tok) // 64) * 64, hidden_size=128, intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, torch_dtype="float32")
    config.architectures = [architecture]
    config.initializer_range = 0.2  # a backbone whose output depends on the context enough that
    return config                   # the steps' scores differ


@pytest.fixture(scope="module")
def prm_dirs(tmp_path_factory):
    """A Qwen2ForProcessRewardModel (backbone + Linear-ReLU-Linear 2-label `score` head, the
    layout of Qwen2.5-Math-PRM's checkpoints) and a causal LM for the Math-Shepherd style."""
    root = tmp_path_factory.mktemp("prm")
    cls_dir, shep_dir = root / "classifier", root / "shepherd"
    tok = _tokenizer(cls_dir, chat=True)
    config = _config(tok, "Qwen2ForProcessRewardModel")
    torch.manual_seed(0)
    weights = {f"model.{k}": v.contiguous() for k, v in Qwen2Model(config).state_dict().items()}
    h = config.hidden_size
    weights.update({"score.0.weight": torch.randn(h, h) * 0.1, "score.0.bias": torch.randn(h) * 0.01,
                    "score.2.weight": torch.randn(2, h) * 0.15, "score.2.bias": torch.randn(2) * 0.01})
    save_file(weights, str(cls_dir / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(cls_dir))
    tok = _tokenizer(shep_dir, chat=False)
    torch.manual_seed(1)
    Qwen2ForCausalLM(_config(tok, "Qwen2ForCausalLM")).save_pretrained(str(shep_dir))
    return cls_dir, shep_dir


@pytest.fixture(scope="module")
def classifier(prm_dirs):
    judge = StepClassifierJudge(model=str(prm_dirs[0]), dtype="float32", kv_cache_gb=0.1)
    yield judge
    judge.close()


def _reference_classifier(model_dir, ids: list[int], tag_id: int) -> list[float]:
    backbone = Qwen2Model.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    w = load_file(str(model_dir / "model.safetensors"))
    with torch.no_grad():
        hidden = backbone(torch.tensor([ids])).last_hidden_state[0]
        inner = torch.relu(hidden @ w["score.0.weight"].T + w["score.0.bias"])
        probs = torch.softmax(inner @ w["score.2.weight"].T + w["score.2.bias"], -1)
    return probs[torch.tensor(ids) == tag_id, 1].tolist()


def test_styles_are_read_from_the_architecture(prm_dirs, tmp_path):
    assert detect_style(prm_dirs[0]) == "classifier"
    assert detect_style(prm_dirs[1]) == "shepherd"
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="style=classifier"):
        detect_style(tmp_path)


def test_classifier_style_scores_every_step_as_the_reference(classifier, prm_dirs):
    spans = split_lines(RESPONSE)
    text = classifier.format(PROBLEM, ["a", "b"])
    assert text.endswith("<|user|>\n" + PROBLEM + "\n<|assistant|>\na<extra_0>b<extra_0>\n")
    judgment = classifier.judge_steps(PROBLEM, RESPONSE, spans, True, "9")
    assert len(judgment.scores) == len(spans) == 3
    assert all(0.0 <= s <= 1.0 for s in judgment.scores)
    ids = classifier.token_ids(PROBLEM, RESPONSE, spans)
    want = _reference_classifier(prm_dirs[0], ids, classifier.step_tag_id)
    assert judgment.scores == pytest.approx(want, abs=1e-4)
    assert max(want) - min(want) > 0.01  # the check would notice a shuffled or constant score
    assert len(json.loads(judgment.raw)["logits"]) == 3


def test_a_step_tag_inside_the_text_adds_no_score(classifier):
    response = "Step 1: 2 + 2 = 4 <extra_0> ok.\nStep 2: so 4."
    spans = split_lines(response)
    assert len(classifier.judge_steps("p", response, spans, True, "4").scores) == 2


def test_a_failing_judge_gives_judge_error_on_that_sample_only(classifier):
    with GradingPool(num_workers=1) as grader:
        scorer = Scorer(judge="step_classifier", engine=classifier.engine, grader=grader)
        rows = [{"problem": PROBLEM, "response_text": RESPONSE, "gold_answer": "9"},
                {"problem": PROBLEM, "response_text": "1 + 1 = 2.\n" * 60, "gold_answer": "2"}]
        ok, too_long = scorer.score_many(rows)
    assert ok.judge_error is None and len(ok.step_scores) == 3 and ok.outcome_correct
    assert too_long.step_scores == [] and "exceeds the PRM's context" in too_long.judge_error


def test_a_batch_is_one_engine_call_with_each_samples_own_scores(classifier):
    engine = Counting(classifier.engine, "encode")
    judge = StepClassifierJudge(engine=engine)
    other = "Step 1: 2 + 2 = 5.\nStep 2: so 5."
    requests = [StepRequest(PROBLEM, RESPONSE, split_lines(RESPONSE), True, "9"),
                StepRequest(PROBLEM, "1 + 1 = 2.\n" * 60, split_lines("1 + 1 = 2.\n" * 60),
                            True, "2"),  # beyond the PRM's context
                StepRequest(PROBLEM, "", [], False, None),
                StepRequest("What is 2 + 2?", other, split_lines(other), False, "5")]
    batch = judge.judge_batch(requests)
    assert engine.calls["encode"] == 1
    assert "exceeds the PRM's context" in str(batch[1]) and batch[2].scores == []
    for i in (0, 3):
        (alone,) = judge.judge_batch([requests[i]])
        assert batch[i].scores == pytest.approx(alone.scores, abs=1e-6)
        assert len(batch[i].scores) == len(requests[i].spans)
    assert engine.calls["encode"] == 3


def test_shepherd_style_gives_p_plus_against_p_minus(prm_dirs):
    judge = StepClassifierJudge(model=str(prm_dirs[1]), dtype="float32", kv_cache_gb=0.1)
    try:
        spans = split_lines(RESPONSE)
        assert judge.style == "shepherd"
        assert judge.format("Q", ["s1", "s2"]) == "Q s1 ки\ns2 ки"
        judgment = judge.judge_steps(PROBLEM, RESPONSE, spans, True, "9")
        ids = judge.token_ids(PROBLEM, RESPONSE, spans)
    finally:
        judge.close()
    assert len(judgment.scores) == 3 and all(0.0 <= s <= 1.0 for s in judgment.scores)
    lm = Qwen2ForCausalLM.from_pretrained(str(prm_dirs[1]), dtype=torch.float32).eval()
    plus, minus = judge.tokenizer.convert_tokens_to_ids(["+", "-"])
    with torch.no_grad():
        logits = lm(torch.tensor([ids])).logits[0]
    at_tags = logits[torch.tensor(ids) == judge.step_tag_id][:, [plus, minus]]
    want = torch.softmax(at_tags, -1)[:, 0].tolist()
    assert judgment.scores == pytest.approx(want, abs=1e-4)
    assert max(want) - min(want) > 0.01
