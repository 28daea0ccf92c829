"""Prompt texts of the generative judges and the segmenter, and how steps are shown in them."""
from __future__ import annotations

Spans = list[tuple[int, int]]


def step_texts(response: str, spans: Spans) -> list[str]:
    return [response[a:b].strip() for a, b in spans]


def numbered_steps(steps: list[str]) -> str:
    return "\n".join(f"[Step {i}] {s}" for i, s in enumerate(steps))


def tagged_paragraphs(steps: list[str]) -> str:
    """ProcessBench's layout: each step enclosed in <paragraph_i> tags, indexed from 0."""
    return "\n\n".join(f"<paragraph_{i}>\n{s}\n</paragraph_{i}>" for i, s in enumerate(steps))


# ---- TP-GRPO: judging by intrinsic signals, never by re-solving ---------------------------

TPGRPO_CORRECT = """\
The solution below reaches the correct final answer. Do not solve the problem yourself: judge \
only from what the solution says about itself.

Problem:
{problem}

Solution, split into numbered steps:
{steps}

Find every self-reflection (a step such as "Wait, that is wrong" that corrects earlier work). \
For each one, trace back the interval of steps it corrects, and list the later steps that \
built on those wrong steps before the reflection. The reflection itself is not wrong.
Write one line per reflection, exactly:
REFLECTION r: WRONG a-b; DEPENDENT i, j
(use "DEPENDENT none" when no step depends on them). If nothing is corrected, write: NONE"""

TPGRPO_WRONG = """\
The solution below reaches a wrong final answer{answer}. Do not solve the problem yourself: \
judge only from what the solution says.

Problem:
{problem}

Solution, split into numbered steps:
{steps}

Which steps lead to or state the wrong final answer (their result is the wrong answer, or the \
wrong answer is computed from them)? Every other step is uncertain.
Write one line, exactly:
MATCHES: i, j, k
(or "MATCHES: none")."""


# ---- R-PRM: a critique per step, then a Yes/No verdict ------------------------------------

RPRM_CRITIQUE = """\
Problem:
{problem}

Previous steps of a solution:
{previous}

Next step:
{step}

Analyze whether the next step is correct, given the problem and the previous steps. Check its \
reasoning and every calculation."""

RPRM_VERDICT = "\nVerification: Is the step correct (Yes/No)?"
RPRM_CHOICES = (" Yes", " No")
RPRM_STOP = ["Verification:"]  # the verdict is asked for, never sampled


# ---- Self-PRM: ProcessBench's critic prompt -----------------------------------------------

PROCESSBENCH_CRITIC = """\
The following is a math problem and a solution (split into paragraphs, enclosed with tags and \
indexed from 0):

[Math Problem]

{problem}

[Solution]

{tagged_response}

Your task is to review and critique the solution paragraph by paragraph. Once you identify an \
error in a paragraph, return the index of the paragraph where the earliest error occurs. \
Otherwise, return the index of -1 (which typically denotes "not found").

Please put your final answer (i.e., the index) in \\boxed{{}}."""


# ---- TP-GRPO's LLM segmenter --------------------------------------------------------------

SEGMENT = """\
Split the following solution into its reasoning steps: each step is one coherent move \
(setting up, one calculation, a check, a self-correction, the conclusion).

Solution:
{text}

Do not rewrite anything. Write one line per step, in order, quoting the first words (3 to 8) \
of the step exactly as they appear in the solution:
1. <first words of step 1>
2. <first words of step 2>"""
