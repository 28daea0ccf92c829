"""Reading arithmetic that carries words, GSM8K style: `2 cats * 4 legs/cat = 8 legs`.

The words after a number, up to the next operator, are that number's unit and drop out of the
arithmetic: the claim above states 2 * 4 = 8. The rest of this module says when such a reading
is doubtful, so that the judge skips the claim instead of flagging a correct step: a word that
scales a number ("half of 10 + 2", "2 dozen eggs"), a number that the words tie to the first
operand ("2 packs of 3 pens + 4 pens"), a unit that is a symbol ("2x + 3"), and, for a claim that
fails literally, units that convert into each other ("30 minutes * 4 = 2 hours", "1 hour + 30
minutes = 90 minutes", "$1 + 50 cents = $1.50").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"(?P<num>\d+(?:\.\d+)?|\.\d+)|(?P<word>[^\W\d_]+(?:['’][^\W\d_]+)*)"
                    r"|(?P<arith>[-+*/^()%√])|(?P<space>\s+)|(?P<other>.)", re.S)
_MAX_UNIT_WORDS = 5
MATH_BREAK = "¦"  # what LaTeX's \( \) \[ \] become: a clause ends, an expression may go on
_BOUNDARIES = frozenset(";:≈" + MATH_BREAK)  # normalized commas and sentence periods are ";"
_NAME_MARKS = frozenset("_|]\\'’!")  # glued to a number, these make it part of a name or symbol
# Words that scale or transform the number after them ("twice 5 + 3", "half of 10 + 2").
_SCALERS = frozenset("""
    times twice thrice double doubled triple tripled quadruple half halves halved third thirds
    quarter quarters fourth fourths fifth fifths tenth tenths dozen dozens hundred hundreds
    thousand thousands million millions billion billions trillion grand percent percentage pct
    squared cubed root roots power powers mod modulo choose factorial sin cos tan cot sec csc
    log ln exp sqrt gcd lcm
""".split())
# Of those, the ones that also scale the number before them ("2 dozen", "5 squared"); "3
# times/day" is a rate and "400 fifth graders" a noun.
_UNIT_SCALERS = _SCALERS - frozenset("times third fourth fifth tenth".split())
# Words that tie an earlier number to the first operand: "2 packs of 3 pens + 4 pens".
_LINKS = frozenset("of with each per containing holding".split())
# Words that start a clause: a unit does not run across them.
_CLAUSE = frozenset("and or but so then thus hence implies".split())
# A unit's head noun comes before these: "hours a day", "dollars in dimes", "pieces of straw".
_UNIT_TAIL = frozenset("/ per a an each every in of for from to at on with by".split())
# Units a quantity may be converted between (see hides_conversion).
_DIMENSIONS = {
    "time": "second seconds sec secs minute minutes min mins hour hours hr hrs day days week "
            "weeks month months year years yr yrs decade decades century centuries",
    "length": "inch inches foot feet ft yard yards yd yds mile miles mi mm millimeter millimeters "
              "millimetre millimetres cm centimeter centimeters centimetre centimetres meter "
              "meters metre metres km kilometer kilometers kilometre kilometres",
    "amount": "ounce ounces oz pound pounds lb lbs gram grams kg kilogram kilograms mg milligram "
              "milligrams ton tons tonne tonnes cup cups pint pints quart quarts gallon gallons "
              "liter liters litre litres ml milliliter milliliters millilitre millilitres "
              "tablespoon tablespoons tbsp teaspoon teaspoons tsp",
    "money": "dollar dollars cent cents penny pennies nickel nickels dime dimes",
}
_UNIT_DIMENSION = {w: d for d, words in _DIMENSIONS.items() for w in words.split()}
_SINGULAR = {"feet": "foot", "inches": "inch", "centuries": "century", "lbs": "lb",
             "pennies": "penny"}
_CLOCK = frozenset("am pm o'clock noon midnight".split())
_DATA_UNITS = frozenset("kb mb gb tb kbps mbps mph kph".split())


@dataclass
class _Token:
    kind: str  # num, word, arith or other
    text: str
    start: int
    end: int


@dataclass
class Chain:
    """Arithmetic read back from the end of a piece of text."""
    expression: str  # the arithmetic, each unit replaced by a space
    units: list[list[str]]  # lowercase words between one operand and the next operator
    trailing: list[str]  # lowercase words between the last operand and the end
    before: list[str]  # the clause before the expression: lowercase words, "#" for a number
    glued: bool = False  # a unit written onto its number: 2xy, 3ab (symbols, not units)

    @property
    def starts_piece(self) -> bool:
        return not self.before


def _tokens(piece: str) -> list[_Token]:
    toks = [_Token(m.lastgroup, m.group().lower(), m.start(), m.end())
            for m in _TOKEN.finditer(piece) if m.lastgroup != "space"]
    for k, tok in enumerate(toks[:-1]):
        after = toks[k + 1]
        # legs/cat, $0.45/apple, miles / hour: a slash before a word is part of a unit
        if tok.text == "/" and after.kind == "word":
            tok.kind = "word"
        # 10-foot, 5-year-old: a hyphen that joins a word to what it follows
        elif (tok.text == "-" and after.kind == "word" and k > 0
              and toks[k - 1].kind in ("num", "word")
              and toks[k - 1].end == tok.start and tok.end == after.start):
            tok.kind = "word"
    return toks


def _ends_value(tok: _Token) -> bool:
    return tok.kind == "num" or tok.text in (")", "%")


def _words_back(toks: list[_Token], i: int) -> int:
    while i > 0 and toks[i - 1].kind == "word":
        i -= 1
    return i


def read_chain(piece: str) -> Chain | None:
    """The arithmetic that ends `piece` (the text before an `=`), or None where the text there
    is no complete arithmetic: numbers joined by operators, each optionally followed by words."""
    toks = _tokens(piece)
    i = len(toks)
    while i > 0 and toks[i - 1].text == MATH_BREAK:
        i -= 1  # "\[ 24 \times 24 \] \[ = 576 \]": the expression goes on past the break
    runs: list[tuple[int, int]] = []  # token ranges of arithmetic, last first
    units: list[list[str]] = []  # last first; the first entry is the trailing unit
    glued = False
    while True:
        j = _words_back(toks, i)
        if j < i and (j == 0 or not _ends_value(toks[j - 1])):
            return None  # "apples * 2 =", "- x =": the arithmetic runs into words
        units.append([t.text for t in toks[j:i]])
        glued = glued or (j < i and toks[j - 1].end == toks[j].start
                          and toks[j].text not in "/-" and not is_measure(toks[j].text))
        k = j
        while k > 0 and toks[k - 1].kind in ("num", "arith"):
            k -= 1
        if k == j:
            return None
        runs.append((k, j))
        first, previous = toks[k], toks[k - 1] if k > 0 else None
        if first.kind == "num" or first.text in "(√" or (first.text == "-" and (
                previous is None or previous.text in _BOUNDARIES)):
            break  # where the expression starts
        if previous is None or previous.kind != "word":
            return None  # "* 4 =", "|x| - 3 =": an operator with nothing readable before it
        i = k
    if previous is not None and previous.text == "±":
        return None  # "8/4 ± 2√2/4": two values, not one
    if previous is not None and previous.end == first.start and (
            previous.kind == "word" or previous.text in _NAME_MARKS):
        return None  # x2, f(2), r_3, |5 - 8|, \sqrt[3]{8}: glued to a name or a bracket
    if k > 1 and previous.kind == "word" and toks[k - 2].text in "\\_" \
            and toks[k - 2].end == previous.start:
        return None  # \pi (1)^2, \log_x (100): a symbol or function before the number
    w = _words_back(toks, k)
    if 0 < w and k - w <= 3 and toks[w - 1].text in "+-*/^":
        return None  # "25 + his 1 teacher + 1": words cut the arithmetic short
    start = k
    while start > 0 and toks[start - 1].kind != "other":
        start -= 1
    before = ["#" if t.kind == "num" else t.text for t in toks[start:k]]
    expression = " ".join(piece[toks[a].start:toks[b - 1].end] for a, b in reversed(runs))
    return Chain(expression, [u for u in units[1:] if u], units[0], before, glued)


def doubtful_chain(chain: Chain) -> bool:
    """Whether the words around the arithmetic may change what it means."""
    last = chain.before[-2:] if chain.before[-1:] == ["of"] else chain.before[-1:]
    if _SCALERS.intersection(last):
        return True  # "twice 5 + 3", "half of 10 + 2", "log 100 + 1"
    if "#" in chain.before:
        words = chain.before[len(chain.before) - chain.before[::-1].index("#"):]
        if len(words) <= 2 and words[-1:] and words[-1] in _LINKS:
            return True  # "2 packs of 3 pens + 4 pens": which numbers combine is unclear
    if chain.glued:
        return True  # 2xy, 3ab: symbols, not units
    for unit in [*chain.units, chain.trailing]:
        words = [w for w in unit if w not in ("/", "-")]
        if words[:1] == ["of"]:
            return True  # "1/4 of the oranges": a part of something, not a count
        if len(words) > _MAX_UNIT_WORDS or any(
                w in _CLAUSE or w in _UNIT_SCALERS or (len(w) == 1 and (k == 0 or w != "a"))
                for k, w in enumerate(words)):
            return True  # a clause, a symbol ("2 x + 3") or a scaling word ("2 dozen eggs")
    return False


def _head(words: list[str]) -> list[str]:
    """A unit's head words: "hours" of "hours a day", "legs" of "legs / cat"."""
    end = next((k for k, w in enumerate(words) if w in _UNIT_TAIL), len(words))
    return words[:end]


def value_words(right: str) -> tuple[list[str], bool]:
    """The words after the number a claim's right side starts with ("= 120 minutes a day"),
    and whether an operator follows the number or its words (the right side goes on as an
    expression: "= 5^2 + 1", "= 93 days + 28")."""
    toks = _tokens(right[:400])
    k = 1 if toks[:1] and toks[0].text == "-" else 0
    k += k < len(toks) and toks[k].kind == "num"
    k += k < len(toks) and toks[k].text == "%"
    end = k
    while end < len(toks) and toks[end].kind == "word" and end - k < _MAX_UNIT_WORDS:
        end += 1
    after = toks[end:end + 2]
    goes_on = bool(after) and after[0].text in "+-*/^√(±" and not (
        after[0].text == "(" and (len(after) == 1 or after[1].kind == "word"))  # "(a remark)"
    return [t.text for t in toks[k:end]], goes_on


def right_chain(right: str) -> Chain | None:
    """The computation a claim's right side consists of, up to the end of its clause
    ("= 2 * 12 ; so", "= 93 days + 28 + 79 days"), or None if it is not one."""
    end = next((t.start for t in _tokens(right) if t.text in _BOUNDARIES), len(right))
    chain = read_chain(right[:end])
    return chain if chain is not None and chain.starts_piece else None


def is_measure(word: str) -> bool:
    """Whether `word` is a unit of measure (which may be written onto its number: 20cm)."""
    return word.lower() in _UNIT_DIMENSION or word.lower() in _DATA_UNITS


def _measures(words: list[str]) -> dict[str, set[str]]:
    """The units of measure among `words`, by dimension."""
    seen: dict[str, set[str]] = {}
    for w in words:
        if w in _UNIT_DIMENSION:
            seen.setdefault(_UNIT_DIMENSION[w], set()).add(_SINGULAR.get(w, w.removesuffix("s")))
    return seen


def hides_conversion(chain: Chain, right: str, dollar_sign: bool) -> bool:
    """Whether a claim that fails literally may be stating a unit conversion: a result in a
    unit the left side does not mention ("30 minutes * 4 = 2 hours"), a sum of two units of
    one dimension ("1 hour + 30 minutes"), money below a visible dollar, or clock times."""
    left = [w for unit in [*chain.units, chain.trailing] for w in unit]
    heads = _measures([w for unit in [*chain.units, chain.trailing] for w in _head(unit)])
    result_words = value_words(right)[0]
    result = _measures(_head(result_words))
    if _CLOCK.intersection(left + result_words):
        return True
    if dollar_sign and (heads.get("money", set()) | result.get("money", set())) - {"dollar"}:
        return True  # "$1 + 50 cents": the dollar sign is a unit too
    mentioned = _measures(left)
    if any(mentioned.get(d) and not units <= mentioned[d] for d, units in result.items()):
        return True
    adds = re.search(r"(?<=[\w)%])\s*[-+]", chain.expression) is not None
    return adds and any(len(units) > 1 for units in heads.values())
