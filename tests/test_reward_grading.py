import asyncio
import logging
import threading

import pytest
from grading_pairs import KNOWN_SHAPES, gsm8k_rows, math500_rows

from reward_service.grading import (Grade, GradingPool, check_settings, plain_number,
                                    settle_in_process)

HANG = "\\boxed{\\dfrac{5^{5^{5^{5^5}}}}{2}}"
BIG = "1" * 5000  # past Python's 4,300-digit limit for int(str)


@pytest.fixture(scope="module")
def pool():
    # A limit no real answer reaches on a loaded 2-core machine (a worker builds its parser before
    # it says ready); only a hang (HANG) runs into it.
    with GradingPool(num_workers=2, timeout_s=8.0, max_chars=20_000) as p:
        p.grade("\\boxed{\\frac{1}{2}}", "0.5")  # wait for the workers to start
        yield p


def plain_math_verify(gold: str, response: str) -> bool:
    from math_verify import parse, verify
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return bool(verify(parse(gold), parse(response)))


def test_plain_numbers_are_compared_exactly():
    assert plain_number("1,234") == 1234
    assert plain_number("-3.50") == plain_number("-3.5")
    assert plain_number("$18") == 18
    assert plain_number("1/2") is None and plain_number("12 apples") is None
    assert plain_number(BIG) is None  # too many digits for Python's int(): not a number here


def test_integers_are_settled_in_process_as_math_verify_reads_them():
    assert settle_in_process("so #### 1,234", "1234") == Grade(True, "1234")
    assert settle_in_process("The answer is \\boxed{52}", "52") == Grade(True, "52")
    assert settle_in_process("The answer is 17", "18") == Grade(False, "17")
    # math-verify's priorities, not the last number: the "answer" phrase beats a later number.
    assert settle_in_process("The answer is 17. We also saw 18 birds.", "18") == Grade(False, "17")
    assert plain_math_verify("18", "The answer is 17. We also saw 18 birds.") is False
    # Not integers on both sides: math-verify must parse (None = a worker decides).
    assert settle_in_process("\\boxed{\\frac{1}{2}}", "0.5") is None
    assert settle_in_process("The final answer is $14{,}916$", "14916") is None
    assert settle_in_process("#### 5", "2\\sqrt{5}") is None  # a bare gold is read as LaTeX too
    assert settle_in_process(f"\\boxed{{{BIG}}}", BIG) is None


def test_in_process_grades_need_no_worker():
    with GradingPool(num_workers=1) as p:
        assert p.grade("so #### 1,234", "1234").correct
        assert not p.grade("The answer is 17", "18").correct
        assert p.in_process == 2 and p.graded == 2


def test_math_verify_equivalence(pool):
    assert pool.grade("thus \\boxed{\\frac{1}{2}}", "0.5").correct
    assert pool.grade("\\boxed{(x+1)^2}", "x^2+2x+1").correct
    assert pool.grade("We get \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.",
                      "\\left( 3, \\frac{\\pi}{2} \\right)").correct
    wrong = pool.grade("\\boxed{\\frac{1}{3}}", "0.5")
    assert not wrong.correct and wrong.error is None


@pytest.mark.parametrize("gold,response", KNOWN_SHAPES)
def test_never_wrong_where_math_verify_is_right(pool, gold, response):
    """Several boxes (a set), `14{,}916`, a stray earlier box, a sentence after "Final Answer:",
    golds such as `1,22` and `$1-\\frac{1}{\\mathrm{e}}$` that a box would change."""
    grade = pool.grade(response, gold)
    assert grade.error is None
    assert grade.correct >= plain_math_verify(gold, response)


def test_what_the_known_shapes_are_read_as(pool):
    got = {response: pool.grade(response, gold) for gold, response in KNOWN_SHAPES}
    assert got["So $x = \\boxed{1}$ or $x = \\boxed{-2}$."].extracted == "1 and -2"
    assert got["The final answer is $14{,}916$"] == Grade(True, "14,916")
    assert got["First \\boxed{255}. Adding the rest, the total is 10,455.\n"
               "The final answer is $10,455$"] == Grade(True, "10,455")
    assert got["Final Answer: She buys 12 apples, so the answer is twelve."] == Grade(True, "12")
    # A bare LaTeX gold is read whole; plain math-verify reads `2\\sqrt{5}` as 2, both ways wrong.
    assert pool.grade("The answer is $2\\sqrt{5}$", "2\\sqrt{5}").correct
    assert not plain_math_verify("2\\sqrt{5}", "The answer is $2\\sqrt{5}$")
    assert not pool.grade("The answer is $2$", "2\\sqrt{5}").correct
    assert plain_math_verify("2\\sqrt{5}", "The answer is $2$")


def test_numbers_too_long_for_python_are_graded_like_any_row(pool):
    pairs = [(f"\\boxed{{{BIG}}}", "5"), ("\\boxed{5}", f"\\boxed{{{BIG}}}"), (BIG, BIG),
             (f"The answer is {BIG}", "7"), (f"so #### {BIG}", BIG),
             (f"\\boxed{{{BIG}}}", f"\\boxed{{{BIG}}}"), (f"\\boxed{{{BIG}}}", BIG), ("\\boxed{5}", "5")]
    grades = pool.grade_many(pairs)
    assert all(isinstance(g, Grade) for g in grades)
    # math-verify cannot make a number of them; it still compares the boxed texts.
    assert [g.correct for g in grades] == [False] * 5 + [True, False, True]
    assert all(g.correct >= plain_math_verify(gold, r) for g, (r, gold) in zip(grades, pairs))


def test_grade_never_raises():
    with GradingPool(num_workers=1) as p:
        assert p.grade(None, "1") == Grade(False, None, "bad_input")
        assert p.grade("\\boxed{1}", "   ").error == "empty_gold"
    assert p.grade("\\boxed{\\frac{1}{2}}", "0.5") == Grade(False, None, "pool_closed")


@pytest.mark.parametrize("workers,timeout", [(0, 5), (-1, 5), (10**6, 5), (1.5, 5), (True, 5),
                                             (1, 0), (1, -1), (1, float("nan")),
                                             (1, float("inf")), (1, 1e12)])
def test_bad_settings_are_refused_before_any_worker_starts(workers, timeout):
    with pytest.raises(ValueError, match="workers" if timeout == 5 else "timeout"):
        check_settings(workers, timeout)
    with pytest.raises(ValueError):
        GradingPool(num_workers=workers, timeout_s=timeout)


def test_hanging_parse_times_out_and_others_are_unaffected(pool):
    timeouts, restarts = pool.timeouts, pool.restarts
    grades = pool.grade_many([(HANG, "1"), ("\\boxed{\\sqrt{4}}", "2"), ("\\boxed{2/4}", "1/2"),
                              ("\\boxed{x}", "y")])
    assert grades[0].error == "timeout" and not grades[0].correct
    assert [g.correct for g in grades[1:]] == [True, True, False]
    assert all(g.error is None for g in grades[1:])
    assert pool.timeouts == timeouts + 1 and pool.restarts == restarts + 1
    # The replacement was started while a grading thread ran; that thread has ended since, and
    # the replacement (which dies with the thread that started it) must still be there.
    again = [pool.grade("\\boxed{\\frac{2}{4}}", "1/2") for _ in range(3)]
    assert again == [Grade(True, "\\frac{2}{4}")] * 3
    assert pool.restarts == restarts + 1


def test_too_long_is_refused_without_parsing(pool):
    g = pool.grade("\\boxed{" + "1+" * 20_000 + "1}", "3")
    assert g.error == "too_long" and not g.correct
    assert pool.grade("x" * 30_000, "3").error == "too_long"


def test_usable_from_threads_and_asyncio_executors(pool):
    results = []

    def work():
        results.append(pool.grade("\\boxed{\\frac{6}{8}}", "3/4").correct)

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert results == [True] * 4

    async def main():
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*[
            loop.run_in_executor(None, pool.grade, "\\boxed{\\sqrt{9}}", "3") for _ in range(3)])

    assert [g.correct for g in asyncio.run(main())] == [True] * 3


def test_grade_many_keeps_order_and_reports_progress(pool):
    seen = []
    pairs = [(f"#### {i}", str(i if i % 2 else i + 1)) for i in range(10)]
    grades = pool.grade_many(pairs, progress=lambda done, total: seen.append((done, total)))
    assert [g.correct for g in grades] == [i % 2 == 1 for i in range(10)]
    assert seen[-1] == (10, 10)


def test_reference_solutions_grade_correct(pool):
    gsm = gsm8k_rows()
    math = [r for r in math500_rows() if "solution" in r]
    pairs = [(r["answer"], r["answer"].split("####")[-1].strip()) for r in gsm] + \
            [(r["solution"], r["answer"]) for r in math]
    grades = pool.grade_many(pairs)
    assert len(pairs) > 190 and sum(g.correct for g in grades) / len(pairs) >= 0.98


def test_required_answer_refuses_number_soup():
    soup = "7 3 12 9 14 2 + 5"
    with GradingPool(num_workers=1, timeout_s=5.0, require_answer=True) as strict:
        assert strict.grade(soup, "5") == Grade(False, None, None)
        assert strict.grade("We conclude\n$$\n\\frac{1}{2}\n$$", "\\frac{1}{2}") == Grade(False, None, None)
        assert strict.grade("so \\boxed{5}", "5").correct
        assert strict.grade("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
                            "0.5").correct
        assert strict.grade("Answer: 18 apples", "18").correct
        assert strict.grade("She has 3 + 15 = 18 left.\n#### 18", "18").correct
        assert strict.grade("She has 3 + 15 = 18 left.\n#### 18\nThen 7.", "18").correct
    with GradingPool(num_workers=1, timeout_s=5.0) as lenient:
        assert lenient.grade(soup, "5").correct  # math-verify's fallback: the last expression
