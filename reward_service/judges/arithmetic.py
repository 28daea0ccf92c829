"""Arithmetic claims in free text (`48/2 = 24`, `9 * 2 = $18`, `<<16-3-4=9>>`,
`2 cats * 4 legs/cat = 8 legs`) and their exact check with sympy rationals.

A claim is `expression = value` where the expression has at least one operator. Text is first
normalized (LaTeX fractions and operators, currency, thousands separators, scientific notation,
sentence punctuation); the left side of each `=` is then read back from the `=` as numbers and
operators, with the words between a number and the next operator read as that number's unit
(`90 baked cookies - 10 eaten cookies`; see units.py). Where the words may change the arithmetic
(a multiplier such as "half" or "dozen", units that convert into each other) or a number has two
readings (a decimal comma, a LaTeX mixed number), the judge prefers missing a check to flagging
a correct step. Every rule is linear in the length of the text.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from decimal import Decimal

import sympy

from reward_service.judges.units import (MATH_BREAK, Chain, doubtful_chain, hides_conversion,
                                         is_measure, read_chain, right_chain, value_words)

_MAX_EXPR_CHARS = 200
_MAX_DIGITS = 40
_MAX_POWER_BITS = 4096

_CALC_NOTE = re.compile(r"<<([^<>\n]{0,300})>>")
_FRAC = re.compile(r"\\[dt]?frac\s*+(?=\{)")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SCIENTIFIC = re.compile(r"(?<![\w.])(\d++(?:\.\d++)?)[eE]([-+]?\d++)(?![\w.])")
# "3 1/2", "3 and 1/2": tried only where a run of digits starts, and no quantifier gives back
# what it took, so a long run of digits is read once.
_MIXED_NUMBER = re.compile(r"(?<![\d.])(\d++)[ \t]++(?:and[ \t]++)?(\d++)/(\d++)(?![\d./])")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")
_LATEX_MIXED = re.compile(r"(?<![\w.^_}])(\d++)[ \t]*+(?=\\[dt]?frac\s*+\{)")
_REPLACEMENTS = [
    (re.compile(r"(?<=[^\W\d_])\$(?=\d)"), " "),  # "spends$25": a word, then the amount
    (re.compile(r"\\left|\\right|\\[,!;: ]|\{,\}|\\\$|\$"), ""),
    (re.compile(r"\\times|\\cdot|\\ast|[×·∗⋅]"), "*"),
    (re.compile(r"\\div|÷"), "/"),
    (re.compile(r"\\pm|\\mp|[±∓]"), " ± "),
    (re.compile(r"\\%|(?<=\d)[ \t]*percent\b", re.IGNORECASE), "%"),
    (re.compile(r"\\sqrt(?!\[)"), "√"),
    (re.compile(r"\\approx|≈|\\sim|~|==?=?|<=|>=|!=|≠|≤|≥|\\neq|\\le|\\ge|:="),
     lambda m: "=" if m.group(0) in ("=", "==", "===") else " ≈ "),
    (re.compile(r"[−–]"), "-"),
    (re.compile("[½¼¾⅓⅔]"), lambda m: _VULGAR[m.group(0)]),
    (re.compile(r"(?<!\d)\*\*|\*\*(?!\d)"), " "),  # markdown bold, not a power
    (re.compile(r"^[ \t]*[-*•][ \t]+", re.MULTILINE), " "),  # list bullets are not minus signs
    (re.compile(r"\\[()\[\]]"), f" {MATH_BREAK} "),
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),  # thousands separators
    (re.compile(r"(?<=\d)(?:\.\.\.|…)"), ""),  # 33.333...: the digits shown, truncated
    (re.compile(r",|\.(?!\d)"), " ; "),  # other commas and sentence periods end an expression
    (re.compile(r"(?<=[\d)])[ \t]*+[xX][ \t]*+(?=[\d(])|(?<=\s)[xX](?=[ \t]++[\d(.])"), "*"),
    (re.compile(r"(?<=\d) (?=\d{3}(?![\d/.]))"), ""),  # 350 000
    (_MIXED_NUMBER, r"(\1+\2/\3)"),
    # A fraction written tight binds tighter than spaced operators: 1 1/2 / 1/2 = 3.
    (re.compile(r"(?<![\w.)/^])(\d++(?:\.\d++)?/\d++(?:\.\d++)?)(?![\w./(^])"), r"(\1)"),
    (re.compile(r"%[ \t]*+of\b"), "% *"),
    (re.compile(r"\{"), "("),
    (re.compile(r"\}"), ")"),
]
_VULGAR = {"½": "(1/2)", "¼": "(1/4)", "¾": "(3/4)", "⅓": "(1/3)", "⅔": "(2/3)"}
_ARITH_CHARS = set("0123456789.+-*/()%^√ \t")
_BINARY_AT = re.compile(r"\s*[*/^+)%]")
_LEADING_NUMBER = re.compile(r"^\s*(-?(?:\d+(?:\.\d*)?|\.\d+))(\s*%)?")
_CUT = re.compile(r"[\s()]+")


@dataclass
class Claim:
    expression: str
    value: str
    holds: bool


@dataclass(frozen=True)
class _Reading:
    """How to read what the text leaves open. The default reading comes first; another one is
    tried only where its `trigger` occurs and the default finds a false claim or none. Where
    `doubt` occurs (or always, without one) the text may still mean the default, so that
    reading can clear a line of false claims but never flag one on its own."""
    trigger: re.Pattern | None = None
    doubt: re.Pattern | None = None
    decimal_comma: bool = False  # 1,5 = 1.5, not the list "1, 5"
    latex_mixed: bool = False  # 3\frac{4}{5} = 3 + 4/5, not 3 * 4/5


_DEFAULT = _Reading()
_OTHER_READINGS = [
    # 1,500 may be either; 1,2,3 is a list
    _Reading(_DECIMAL_COMMA, doubt=re.compile(r"(?<![\d.])[1-9]\d{0,2},\d{3}(?![\d.])|\d,\d+,\d"),
             decimal_comma=True),
    _Reading(_LATEX_MIXED, latex_mixed=True),
]


def _replace_fracs(text: str, latex_mixed: bool = False) -> str:
    """\\frac{A}{B} -> ((A)/(B)) for balanced groups, nested ones included (and with
    `latex_mixed`, N\\frac{A}{B} -> (N+((A)/(B)))). One pass: each fraction only rewrites its
    own command and braces, so nesting needs no recursion."""
    if "frac" not in text:
        return text
    closing, stack = {}, []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closing[stack.pop()] = i
    wholes = {m.end(): m.start() for m in _LATEX_MIXED.finditer(text)} if latex_mixed else {}
    edits: dict[int, tuple[int, str]] = {}  # start -> (end, replacement)
    for m in _FRAC.finditer(text):
        a = m.end()
        b = closing.get(a, -2) + 1
        if b not in closing:
            continue
        mixed = m.start() in wholes
        if mixed:
            edits[wholes[m.start()]] = (wholes[m.start()], "(")
        edits[m.start()] = (a + 1, "+((" if mixed else "((")
        edits[b - 1] = (b + 1, ")/(")
        edits[closing[b]] = (closing[b] + 1, ")))" if mixed else "))")
    out, i = [], 0
    for start in sorted(edits):
        end, replacement = edits[start]
        out += [text[i:start], replacement]
        i = end
    return "".join(out) + text[i:]


def _plain_decimal(m: re.Match) -> str:
    """3e2 -> 300, 3.33e-1 -> 0.333 (the digits shown are kept); out of range: left alone."""
    mantissa, exponent = m.group(1), int(m.group(2)) if len(m.group(2)) < 6 else 10 ** 6
    if len(mantissa) > _MAX_DIGITS or abs(exponent) > _MAX_DIGITS:
        return m.group(0)
    return format(Decimal(f"{mantissa}e{exponent}"), "f")


def normalize(text: str, reading: _Reading = _DEFAULT) -> str:
    """Plain-arithmetic rendering of `text`: one claim context per line."""
    text = _replace_fracs(text, reading.latex_mixed)
    text = _TEXT_CMD.sub(r" \1 ", text)
    text = _SCIENTIFIC.sub(_plain_decimal, text)
    if reading.decimal_comma:
        text = _DECIMAL_COMMA.sub(".", text)
    for pattern, repl in _REPLACEMENTS:
        text = pattern.sub(repl, text)
    return text


# -- exact evaluation -------------------------------------------------------------------------

def _to_python(expr: str) -> str:
    expr = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", expr)
    expr = expr.replace("^", "**").replace("√", " sqrt")
    expr = re.sub(r"(?<=[\d)])\s*(?=\(|sqrt)|(?<=\))\s*(?=\d)", "*", expr)  # 2(3+4), (1/2)3
    expr = re.sub(r"(?<![\d.])0+(?=\d)", "", expr)  # 007 is not valid Python
    return expr.strip()


def _eval_node(node: ast.AST, src: str):
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, src)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        literal = ast.get_source_segment(src, node) or repr(node.value)
        if len(literal) > _MAX_DIGITS:
            return None
        return sympy.Rational(literal)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval_node(node.operand, src)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp):
        a, b = _eval_node(node.left, src), _eval_node(node.right, src)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            return None if b == 0 else a / b
        if isinstance(node.op, ast.Pow):
            return _safe_power(a, b)
        return None
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt"
            and len(node.args) == 1 and not node.keywords):
        v = _eval_node(node.args[0], src)
        return None if v is None or v < 0 else sympy.sqrt(v)
    return None


def _safe_power(base, exponent):
    # Never build a huge number: 5^5^5^5 is text, not arithmetic to check.
    if not (base.is_Rational and exponent.is_Rational) or exponent.q > 4 or abs(exponent.p) > 256:
        return None
    if base == 0 and exponent <= 0:
        return None
    if base < 0 and exponent.q != 1:
        return None
    bits = max(abs(base.p).bit_length(), base.q.bit_length())
    if bits * abs(exponent.p) > _MAX_POWER_BITS:
        return None
    return sympy.Pow(base, exponent)


def evaluate(expr: str):
    """Exact value of an arithmetic expression (sympy number), or None if it is not one."""
    if not expr.strip() or len(expr) > _MAX_EXPR_CHARS:
        return None
    src = _to_python(expr)
    try:
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError):
        return None
    try:
        return _eval_node(tree, src)
    except (ValueError, TypeError, ZeroDivisionError, RecursionError, OverflowError):
        return None


def _has_operator(expr: str) -> bool:
    try:
        tree = ast.parse(_to_python(expr), mode="eval").body
    except (SyntaxError, ValueError):
        return False
    while isinstance(tree, ast.UnaryOp):
        tree = tree.operand
    return isinstance(tree, (ast.BinOp, ast.Call))


# -- claims -----------------------------------------------------------------------------------

def _arith_prefix(piece: str) -> str:
    i = 0
    while i < len(piece) and piece[i] in _ARITH_CHARS:
        i += 1
    return piece[:i]


def _complete(expr: str) -> str | None:
    """`expr`, or its longest tail that evaluates, cut only at spaces and brackets (to drop
    list numbers such as "2) 5 + 3"); None when a cut would start at an operator, i.e. the
    expression runs into what came before. Linear: at most _MAX_EXPR_CHARS are evaluated."""
    if len(expr) <= _MAX_EXPR_CHARS and evaluate(expr) is not None:
        return expr
    for cut in _CUT.finditer(expr):
        rest = cut.end()
        if rest >= len(expr) or _BINARY_AT.match(expr, rest):
            return None
        if len(expr) - rest <= _MAX_EXPR_CHARS and evaluate(expr[rest:]) is not None:
            return expr[rest:]
    return None


def _left_expression(piece: str, in_note: bool = False) -> tuple[str, Chain] | None:
    """The computation just before an `=` (units dropped) and how it was read, or None when
    it is not a complete one. Inside a calculator note (`<<a=b>>`) the whole left side is the
    computation, even a bare number."""
    chain = read_chain(piece)
    expr = _complete(chain.expression.strip()) if chain else None
    if expr is None:
        return None
    if in_note and chain.starts_piece and expr == chain.expression.strip():
        return expr, chain
    if not _has_operator(expr):
        return None  # a bare number ("Day 2 = 10 miles") is a label, not a computation
    if chain.units and expr != chain.expression.strip():
        return None  # a number before the units' arithmetic: which numbers combine is unclear
    if doubtful_chain(chain):
        return None
    return expr, chain


def _value_matches(value, shown: str) -> bool:
    """Whether an exact value equals a number as written, allowing for the rounding shown."""
    shown_value = sympy.Rational(shown)
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    if value == shown_value:
        return True
    step = sympy.Rational(1, 10 ** decimals)
    if value.is_Rational and (value / step).is_integer:
        return False  # exactly representable at the precision shown, yet different
    approx = value if value.is_Rational else sympy.Rational(str(sympy.N(value, 30)))
    return abs(approx - shown_value) < step


def _same(a, b) -> bool:
    """Exact equality; with surds, equality to 30 digits (sympy does not always simplify)."""
    if a.is_Rational and b.is_Rational:
        return a == b
    return abs(sympy.N(a - b, 40)) < sympy.Rational(1, 10 ** 30)


def _right_holds(value, piece: str) -> bool | None:
    number = _LEADING_NUMBER.match(_arith_prefix(piece))
    if number:
        after = piece[number.end():]
        glued = re.match(r"[^\W\d]+", after)
        if (glued and not is_measure(glued.group())) or re.match(r"\.\d", after):
            return None  # "= 6x", "= 2nd", "= 0.0011_2", "= 1.2.3": not a plain value
        shown, percent = number.group(1).rstrip("."), number.group(2)
        if not shown or shown == "-" or len(shown) > _MAX_DIGITS:
            return None
        if _value_matches(value, shown) or (percent and _value_matches(value * 100, shown)):
            return True
    right = right_chain(piece)  # "= 2 * 12 = 24", "= 93 days + 28 + ...": a computation
    if right is not None and (right.expression.startswith("(") or _has_operator(right.expression)):
        whole = None if doubtful_chain(right) else evaluate(right.expression)
        return None if whole is None else _same(whole, value)
    if not number or value_words(piece)[1]:
        return None  # "= the total"; "= 6^2 + b^2": goes on past what can be evaluated
    return False


def _claims_in(context: str, in_note: bool = False, dollar_sign: bool = False) -> list[Claim]:
    claims: list[Claim] = []
    pieces = context.split("=")
    for i, (left, right) in enumerate(zip(pieces, pieces[1:])):
        read = _left_expression(left, in_note=in_note and i == 0)
        if read is None:
            continue
        expr, chain = read
        holds = _right_holds(evaluate(expr), right)
        if holds is False and hides_conversion(chain, right, dollar_sign):
            holds = None  # "30 minutes * 4 = 2 hours": literally false, meant as a conversion
        if holds is not None:
            claims.append(Claim(expr, _arith_prefix(right).strip(), holds))
    return claims


def _line_claims(line: str) -> list[Claim]:
    """A line's claims in the default reading, or in another one (a decimal comma, a LaTeX
    mixed number) where that one reads them all and finds them true, or is the only reading
    that finds any."""
    dollar_sign = "$" in line
    claims = _claims_in(normalize(line), dollar_sign=dollar_sign)
    for reading in _OTHER_READINGS:
        if (claims and all(c.holds for c in claims)) or not reading.trigger.search(line):
            continue
        other = _claims_in(normalize(line, reading), dollar_sign=dollar_sign)
        if not claims:  # the only reading that finds claims: used where it is the plain one
            trusted = reading.doubt is not None and not reading.doubt.search(line)
            claims = other if other and (trusted or all(c.holds for c in other)) else claims
        elif len(other) >= len(claims) and all(c.holds for c in other):
            claims = other  # it reads every claim and finds them all true
    return claims


def find_claims(text: str) -> list[Claim]:
    """Every checkable `expression = value` claim in `text`, each with whether it holds."""
    claims: list[Claim] = []
    for note in _CALC_NOTE.findall(text):
        claims += _claims_in(normalize(note), in_note=True)
    for line in _CALC_NOTE.sub("", text).split("\n"):
        if "=" in line:
            claims += _line_claims(line)
    return claims
