"""Random arithmetic claims, true and false, written the many ways solutions write them (units,
currency, percent, fractions, LaTeX, scientific notation, decimal commas): the judge's verdict
must agree with exact evaluation by Python's `fractions`, and every claim must be found."""
import random
from dataclasses import dataclass
from fractions import Fraction

import pytest

from reward_service.judges.arithmetic import find_claims

NOUNS = ["apples", "cookies", "guinea pigs", "baked cookies", "students", "pages", "legs",
         "boxes of crayons", "tickets", "eggs", "bags of flour", "trees", "points", "marbles"]
RATES = ["legs/cat", "pages per day", "crayons per box", "apples/bag", "miles per gallon"]
OPENERS = ["", "So ", "Then she pays ", "The total is ", "In total, there are ", "Thus ",
           "He needs ", "Of the guests invited, "]
OPERATORS = {"+": ["+"], "-": ["-", "–", "−"], "*": ["*", "x", "×", "\\times", "\\cdot"],
             "/": ["/", "÷", "\\div"]}


@dataclass
class Operand:
    text: str
    value: Fraction
    integer: bool = False


def _decimal(x: Fraction, places: int, comma: bool = False) -> str:
    """x rounded to `places` decimals, exactly."""
    scaled = round(x * 10 ** places)
    digits = str(abs(scaled)).rjust(places + 1, "0")
    text = ("-" if scaled < 0 else "") + digits[:-places] + "." + digits[-places:]
    return text.replace(".", ",") if comma else text


def _operand(rng: random.Random, style: str, first: bool) -> Operand:
    if style == "comma":  # decimal commas: no thousands separators, two decimals
        cents = rng.randint(1, 9999)
        return Operand(_decimal(Fraction(cents, 100), 2, comma=True), Fraction(cents, 100))
    kind = rng.choice(["int", "int", "int", "decimal", "fraction", "mixed", "scientific"]
                      + ["percent"] * first)
    if kind == "int":
        n = rng.randint(1, 20000)
        return Operand(str(n), Fraction(n), integer=True)
    if kind == "decimal":
        cents = rng.randint(1, 99999)
        return Operand(_decimal(Fraction(cents, 100), 2), Fraction(cents, 100))
    if kind == "fraction":
        a, b = rng.randint(1, 9), rng.randint(2, 12)
        text = f"\\frac{{{a}}}{{{b}}}" if style == "latex" else f"{a}/{b}"
        return Operand(text, Fraction(a, b))
    if kind == "mixed":
        whole, a = rng.randint(1, 9), rng.randint(1, 3)
        return Operand(f"{whole} {a}/4", whole + Fraction(a, 4))
    if kind == "percent":
        p, n = rng.randint(1, 150), rng.randint(1, 500)
        return Operand(f"{p}{rng.choice(['%', ' percent'])} of {n}", Fraction(p * n, 100))
    mantissa, exponent = rng.randint(11, 99), rng.randint(-3, 4)
    return Operand(f"{mantissa / 10}e{exponent}", Fraction(mantissa, 10) * Fraction(10) ** exponent)


def _shown(x: Fraction, places: int, style: str, separators: bool) -> str:
    if places == 0:
        return f"{round(x):,}" if separators else str(round(x))
    return _decimal(x, places, comma=style == "comma")


def _claim(rng: random.Random) -> tuple[str, bool]:
    """A claim, and whether it holds. A false one is off by two or more units of the precision
    it is shown with, so it is never a rounding of the true value."""
    style = rng.choice(["plain", "plain", "units", "money", "latex", "comma"])
    count = rng.randint(2, 4)
    operands = [_operand(rng, style, first=k == 0) for k in range(count)]
    ops = [rng.choice("+-*/") for _ in range(count - 1)]
    source = " ".join(f"Fraction({o.value.numerator}, {o.value.denominator}) {op}"
                      for o, op in zip(operands, [*ops, ""]))
    value = eval(source, {"Fraction": Fraction})  # the generator's own plain arithmetic

    # Thousands separators only where no operand has decimals: "9,135" may also be read as
    # a decimal comma, and with decimals about, that reading may make a false claim hold.
    separators = all(o.integer for o in operands) and "/" not in ops and rng.random() < 0.5
    unit, parts = rng.choice(NOUNS), []
    for k, o in enumerate(operands):
        text = ("$" if style == "money" else "") + (f"{int(o.value):,}" if separators else o.text)
        if style == "units" and rng.random() < 0.7:
            text += " " + (rng.choice(RATES) if ops[k - 1:k] == ["*"] else unit)
        parts.append(text)
        if k < len(ops):
            parts.append(rng.choice([s for s in OPERATORS[ops[k]]
                                     if style == "latex" or "\\" not in s]))
    left = " ".join(parts)

    holds = rng.random() < 0.5
    # (decimal commas with three decimals may be thousands separators: never generated)
    places = 0 if value.denominator == 1 else 2 if style == "comma" else rng.choice([2, 3])
    shown_value = value if holds else value + rng.choice([-1, 1]) * rng.choice(
        [2, 3, 10, 100]) * Fraction(1, 10 ** places)
    right = (("$" if style == "money" else "") + _shown(shown_value, places, style, separators)
             + (" " + unit if style == "units" else ""))
    if style == "latex":
        return f"\\( {left} = {right} \\)", holds
    return f"{rng.choice(OPENERS)}{left} = {right}.", holds


@pytest.mark.parametrize("seed", range(4))
def test_random_claims_agree_with_exact_evaluation(seed):
    rng = random.Random(seed)
    disagreements = []
    for _ in range(500):
        text, holds = _claim(rng)
        verdicts = [c.holds for c in find_claims(text)]
        if verdicts != [holds]:
            disagreements.append((text, holds, verdicts))
    assert not disagreements, disagreements[:10]
