"""Token advantages per algorithm, checked against DESIGN.md §4 on groups computed by hand."""
import math
import random

import numpy as np
import pytest

from reward_service.advantages import (GroupSample, get_algorithm, group_advantages,
                                       group_rewards, known_algorithms, outcome_reward,
                                       span_index_of_tokens)
from reward_service.steps import get_splitter
from reward_service.thoughts import label_solution, merge_thoughts

C, I, U = "correct", "incorrect", "uncertain"
R = 0.5 / (0.5 + 1e-6)  # standardized outcome of a half-correct group


def _sample(correct, labels, offsets, num_tokens=None, scores=None, step_labels=None):
    """Thoughts of 10 characters each; steps = thoughts where scores or step labels are given."""
    spans = [(10 * i, 10 * i + 10) for i in range(len(labels))]
    stepped = scores is not None or step_labels is not None
    return GroupSample(outcome_correct=correct, num_tokens=num_tokens or len(offsets),
                       token_char_offsets=offsets, response_text="x" * (10 * len(labels)),
                       thought_spans=spans, thought_labels=labels,
                       step_spans=spans if stepped else [],
                       step_scores=scores if scores is not None else ([1.0] * len(labels) if stepped else []),
                       step_labels=step_labels if step_labels is not None else (labels if stepped else []))


def _mixed_group():
    return [
        # correct, a detour in the middle; the last token (EOS) has no text of its own
        _sample(True, [C, I], [0, 5, 10, 15], num_tokens=5),
        _sample(True, [C], [0, 5]),
        _sample(False, [U, I], [0, 10, 15]),
        _sample(False, [], [0, 4, 8]),  # judging failed: outcome reward only
    ]


def test_registry_lists_every_algorithm_and_rejects_unknown_names():
    assert known_algorithms() == sorted(["grpo", "tpgrpo", "tpgrpo_static", "tpgrpo_steps",
                                         "step_grpo", "reasonflux"])
    assert outcome_reward(_mixed_group()) == [1.0, 1.0, 0.0, 0.0]
    for name in known_algorithms():
        assert get_algorithm(name).name == name and get_algorithm(name).doc
    with pytest.raises(ValueError, match="unknown algorithm 'nope'.*tpgrpo_steps"):
        group_advantages("nope", _mixed_group())


def test_grpo_gives_every_token_the_standardized_outcome():
    adv = group_advantages("grpo", _mixed_group())
    assert [a.dtype for a in adv] == [np.float32] * 4
    np.testing.assert_allclose(adv[0], [R] * 5, rtol=1e-6)
    np.testing.assert_allclose(adv[2], [-R] * 3, rtol=1e-6)


# ---- the TP-GRPO table (DESIGN.md §4), by hand -------------------------------------------------

def test_tpgrpo_all_four_table_rows_by_hand():
    alpha = 0.8
    adv = group_advantages("tpgrpo", _mixed_group(), alpha=alpha)
    acc = 0.5
    # correct/correct: r̂; correct/incorrect: r̂ − α·acc (the EOS takes the last thought)
    np.testing.assert_allclose(adv[0], [R, R, R - alpha * acc, R - alpha * acc, R - alpha * acc],
                               rtol=1e-6)
    np.testing.assert_allclose(adv[1], [R, R], rtol=1e-6)
    # wrong/uncertain: 0; wrong/matches the wrong answer: r̂
    np.testing.assert_allclose(adv[2], [0.0, -R, -R], rtol=1e-6)
    np.testing.assert_allclose(adv[3], [-R] * 3, rtol=1e-6)  # no thoughts: the outcome


def test_tpgrpo_penalty_adapts_to_group_accuracy():
    # 3 of 4 correct: acc 0.75, r̂ = ±(1 - 0.75 or 0.75) / (sqrt(0.75 · 0.25) + ε) ≈ 1/√3, -√3
    group = [_sample(True, [C, I, C], [0, 10, 20]), _sample(True, [C], [0]),
             _sample(True, [I], [0, 3]), _sample(False, [U, I], [0, 10])]
    std = math.sqrt(0.75 * 0.25) + 1e-6
    rc, rw = 0.25 / std, -0.75 / std
    for alpha in (0.5, 1.0, 2.0):
        adv = group_advantages("tpgrpo", group, alpha=alpha)
        np.testing.assert_allclose(adv[0], [rc, rc - 0.75 * alpha, rc], rtol=1e-5)
        np.testing.assert_allclose(adv[2], [rc - 0.75 * alpha] * 2, rtol=1e-5)
        np.testing.assert_allclose(adv[3], [0.0, rw], rtol=1e-5)
        static = group_advantages("tpgrpo_static", group, alpha=alpha)
        np.testing.assert_allclose(static[0], [rc, rc - alpha, rc], rtol=1e-5)
    # a hard prompt (1 of 4 correct): the process penalty nearly vanishes, exploration first
    hard = [_sample(True, [C, I], [0, 10]), _sample(False, [I], [0]), _sample(False, [I], [0]),
            _sample(False, [U, I], [0, 10])]
    adv = group_advantages("tpgrpo", hard, alpha=1.0)
    np.testing.assert_allclose(adv[0], [0.75 / std, 0.75 / std - 0.25], rtol=1e-5)


def test_all_correct_group_still_penalizes_detours():
    group = [_sample(True, [C, I, C], [0, 10, 20]), _sample(True, [C], [0, 3])]
    adv = group_advantages("tpgrpo", group, alpha=1.0)
    np.testing.assert_allclose(adv[0], [0.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(adv[1], [0.0, 0.0], atol=1e-6)
    assert all(np.all(a == 0) for a in group_advantages("grpo", group))


def test_all_wrong_group_gives_no_signal():
    # the final thought is blamed (labels show it), but r̂ᵒ is 0 when every sample is wrong
    truncated = label_solution([(0, 10), (10, 20)], ["x" * 10] * 2, [1.0, 1.0], False, None)
    assert truncated.thought_labels == [I]
    group = [_sample(False, [U, I], [0, 10]), _sample(False, [I], [0]),
             _sample(False, truncated.thought_labels, [0, 10])]
    for name in ("tpgrpo", "tpgrpo_static", "tpgrpo_steps", "grpo"):
        assert all(np.all(a == 0) for a in group_advantages(name, group)), name


def test_a_truncated_wrong_solution_is_never_free():
    """Labelled by the same rules as the Scorer: its final thought carries r̂ᵒ < 0."""
    text = "12 + 7 = 19\n19 * 3 = 57\n57 - 5 ="
    spans = get_splitter("lines")(text)
    labels = label_solution(spans, [text[a:b] for a, b in spans], [1.0] * 3, False, None)
    wrong = GroupSample(False, len(text), list(range(len(text))), text,
                        thought_spans=labels.thought_spans, thought_labels=labels.thought_labels,
                        step_spans=spans, step_scores=[1.0] * 3, step_labels=labels.step_labels)
    right = GroupSample(True, 3, [0, 1, 2], "abc", [(0, 3)], [C], [(0, 3)], [1.0], [C])
    for name in ("tpgrpo", "tpgrpo_static"):
        adv = group_advantages(name, [right, wrong])
        assert np.all(adv[1] < 0), name
    steps = group_advantages("tpgrpo_steps", [right, wrong])[1]
    last = spans[-1][0]
    assert np.all(steps[last:] < 0) and np.all(steps[:last] == 0)


def test_tpgrpo_steps_equals_tpgrpo_where_thoughts_are_the_merged_step_labels():
    """Per-token TP-GRPO advantages depend on a token's label only, so merging equally labelled
    steps changes nothing: the ablation differs only by the final-thought rule (above)."""
    rng = random.Random(1)
    for _ in range(200):
        group = []
        for _ in range(rng.randint(1, 6)):
            text = "".join(rng.choice(["", " ", "\n"]) + "b" * rng.randint(1, 4) + "\n"
                           for _ in range(rng.randint(1, 6)))
            spans = get_splitter("lines")(text)
            correct = rng.random() < 0.5
            labels = [rng.choice([C, I] if correct else [U, I]) for _ in spans]
            tspans, tlabels = merge_thoughts(spans, labels)
            offsets = sorted(rng.sample(range(len(text)), rng.randint(1, len(text))))
            group.append(GroupSample(correct, len(offsets) + 1, offsets, text, tspans, tlabels,
                                     spans, [1.0] * len(spans), labels))
        a = group_advantages("tpgrpo", group, alpha=0.7)
        b = group_advantages("tpgrpo_steps", group, alpha=0.7)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_step_grpo_sums_standardized_rewards_of_later_steps():
    group = [_sample(True, [C, C], [0, 12, 15], scores=[1.0, 0.0]),
             _sample(False, [U, U], [0, 11], scores=[1.0, 1.0])]
    flat = np.array([1.0, 0.0, 1.0, 1.0])
    z = (flat - flat.mean()) / (flat.std() + 1e-6)
    adv = group_advantages("step_grpo", group)
    np.testing.assert_allclose(adv[0], [z[0] + z[1], z[1], z[1]], rtol=1e-5)
    np.testing.assert_allclose(adv[1], [z[2] + z[3], z[3]], rtol=1e-5)
    assert z[0] + z[1] == pytest.approx(1 / np.sqrt(3) - np.sqrt(3), rel=1e-4)


def test_rewards_are_the_outcome_except_for_reasonflux():
    group = _mixed_group()
    for name in ("grpo", "tpgrpo", "tpgrpo_static", "tpgrpo_steps", "step_grpo"):
        assert group_rewards(name, group) == [1.0, 1.0, 0.0, 0.0]
    # no sample has step scores: each gets r̂ = 0, so the blend orders like the outcome
    assert group_rewards("reasonflux", group, beta=0.5) == pytest.approx([0.5, 0.5, 0.0, 0.0])


# ---- tokens belong to the step their first non-space character is in ---------------------------

def test_tokens_go_to_the_step_of_their_first_non_space_character_hand_made():
    text = "a = 1.\n\nWait, a = 2.\n"
    spans = [(0, 8), (8, len(text))]  # "a = 1.\n\n" | "Wait, a = 2.\n"
    # tokens: "a", " =", " 1", ".\n\n" (whitespace tail), "Wait", ",", " a", " = 2.\n", EOS
    offsets = [0, 1, 3, 5, 8, 12, 13, 15]
    sample = GroupSample(True, 9, offsets, text)
    assert span_index_of_tokens(sample, spans).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    # a token " Wait" that begins on the space before the step it opens
    text = "a = 1. Wait, a = 2."
    spans = [(0, 7), (7, len(text))]
    sample = GroupSample(True, 5, [0, 5, 6, 11, 12], text)  # "a = 1" "." " Wait" "," " a = 2."
    assert span_index_of_tokens(sample, spans).tolist() == [0, 0, 1, 1, 1]
    # an all-whitespace token between steps stays with the step before
    sample = GroupSample(True, 3, [0, 6, 7], text)  # "a = 1." " " "Wait, a = 2."
    assert span_index_of_tokens(sample, spans).tolist() == [0, 0, 1]


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A byte-level BPE tokenizer with real merges (GPT-2 style pre-tokenization), built here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["Step 1: 12 + 7 = 19. Wait, that is 19. Hmm, wait, no. So the answer is 52.\n\n"
              "Actually, we wait. Hold on: 57 - 5 = 52. I made a mistake.\n"] * 40
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def test_tokens_go_to_the_step_of_their_first_non_space_character_bpe(bpe_tokenizer):
    from core.engine import decode_with_offsets

    text = ("Step 1: 12 + 7 = 19. Step 2: 19 * 3 = 56. Wait, 19 * 3 = 57.\n\n"
            "Hmm, wait, no. Hold on: 57 - 5 = 52.\nThe answer is 52.")
    ids = bpe_tokenizer.encode(text, add_special_tokens=False) + [bpe_tokenizer.eos_token_id]
    pieces = bpe_tokenizer.convert_ids_to_tokens(ids)
    assert "ĠWait" in pieces and "Ġwait" in pieces  # " Wait" is one token, starting on the space
    decoded, offsets = decode_with_offsets(bpe_tokenizer, ids)
    assert decoded == text and len(offsets) == len(ids)
    spans = get_splitter("lines")(text)
    assert any(text[a:b].startswith("Wait") for a, b in spans)
    got = span_index_of_tokens(GroupSample(True, len(ids), offsets, text), spans).tolist()
    ends = offsets[1:] + [len(text)]
    for k, (start, end) in enumerate(zip(offsets, ends)):
        piece = text[start:end]
        anchor = start + len(piece) - len(piece.lstrip()) if piece.strip() else start
        want = max(i for i, (a, _) in enumerate(spans) if a <= min(anchor, len(text) - 1))
        assert got[k] == want, (k, piece)
    wait = pieces.index("ĠWait")
    assert text[spans[got[wait]][0]:].startswith("Wait")


# ---- finite in, finite out --------------------------------------------------------------------

@pytest.mark.parametrize("bad, field", [
    (dict(step_scores=[float("nan"), 1.0]), "step_scores"),
    (dict(step_scores=[1.0, float("inf")]), "step_scores"),
    (dict(step_scores=[1.0, 2.0]), "step_scores"),
    (dict(trajectory_score=float("nan")), "trajectory_score"),
    (dict(thought_labels=[C, "maybe"]), "thought_labels"),
    (dict(step_labels=[C]), "step labels"),
])
def test_non_finite_or_malformed_inputs_are_refused_naming_the_sample(bad, field):
    good = _sample(True, [C, I], [0, 5, 10], scores=[1.0, 0.0])
    fields = {**good.__dict__, **bad}
    group = [good, GroupSample(**fields)]
    for name in known_algorithms():
        with pytest.raises(ValueError, match=f"sample 1.*{field}"):
            group_advantages(name, group)


def test_advantages_are_finite_on_random_groups():
    rng = random.Random(2)
    for _ in range(300):
        group = []
        for _ in range(rng.randint(1, 8)):
            n = rng.randint(0, 4)
            scores = [rng.choice([0.0, 1.0, rng.random()]) for _ in range(n)]
            labels = [rng.choice([C, I, U]) for _ in range(n)]
            group.append(_sample(rng.random() < 0.5, labels, [0, 5, 10], scores=scores)
                         if n else _sample(rng.random() < 0.5, [], [0, 1]))
            if rng.random() < 0.3:
                group[-1].trajectory_score = rng.random()
        for name in known_algorithms():
            for a in group_advantages(name, group, alpha=rng.uniform(0, 3), beta=rng.random()):
                assert np.all(np.isfinite(a)), name


def test_mismatched_lengths_are_a_clear_error():
    bad = GroupSample(True, 2, [0, 1], "ab", thought_spans=[(0, 2)], thought_labels=[])
    with pytest.raises(ValueError, match="sample 0"):
        group_advantages("tpgrpo", [bad])


def test_the_training_path_from_rollout_records_to_experience():
    """Judge actor → scored records (SCORED_SCHEMA) → experience rows, as the buffer's task runs."""
    from actors.judge import JudgeWorker
    from cluster.experience import group_experience
    from core.records import ROLLOUT_SCHEMA, to_table

    right = ("Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 56\nWait, 19 * 3 = 57.\n"
             "Step 3: 57 - 5 = 52\nThe answer is \\boxed{52}")
    truncated = "Step 1: 12 + 7 = 19\nStep 2: 19 * 3 = 57\nStep 3: 57 - 5 ="
    rows = [dict(prompt_id="p", group_id="g", sample_index=i, problem="Compute (12 + 7) * 3 - 5.",
                 prompt_token_ids=[1, 2], response_token_ids=[7] * (len(text) + 1),
                 response_text=text, token_char_offsets=list(range(len(text) + 1)),
                 rollout_logprobs=[-1.0] * (len(text) + 1), policy_version=0,
                 finish_reason="stop" if i == 0 else "length", gold_answer="52")
            for i, text in enumerate([right, truncated])]
    worker = JudgeWorker(backend="tool", splitter="auto")
    try:
        summary, table = worker.score(to_table(rows, ROLLOUT_SCHEMA))
    finally:
        worker.shutdown()
    assert summary["judge_errors"] == 0 and summary["correct"] == 1
    scored = table.to_pylist()
    assert scored[0]["step_labels"] == [C, I, C, C] and scored[1]["thought_labels"] == [I]
    exp = group_experience(scored, "tpgrpo", alpha=1.0)
    detour = (right.index("Step 2"), right.index("Wait"))
    want = [R - 0.5 if detour[0] <= k < detour[1] else R for k in range(len(right) + 1)]
    np.testing.assert_allclose(exp[0]["advantages"], want, rtol=1e-6)
    np.testing.assert_allclose(exp[1]["advantages"], [-R] * (len(truncated) + 1), rtol=1e-6)
    assert [e["reward"] for e in exp] == [1.0, 0.0] and [e["num_thoughts"] for e in exp] == [3, 1]
