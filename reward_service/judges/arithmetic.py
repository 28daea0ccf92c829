"""Arithmetic claims in free text (`48/2 = 24`, `9 * 2 = $18`, `<<16-3-4=9>>`) and their exact
check with sympy rationals.

A claim is `expression = value` where the expression has at least one operator. Text is first
normalized (LaTeX fractions and operators, currency, thousands separators, sentence punctuation)
so that each claim's sides are maximal runs of arithmetic characters next to an `=`. A side
that runs into words ("3 apples + 2 = 5") is not checkable and is skipped: the judge prefers
missing a check to flagging a correct step.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import sympy

_MAX_EXPR_CHARS = 200
_MAX_DIGITS = 40
_MAX_POWER_BITS = 4096

_CALC_NOTE = re.compile(r"<<([^<>\n]{0,300})>>")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{([^{}]*)\}")
_REPLACEMENTS = [
    (re.compile(r"\\left|\\right|\\[,!;: ]|\{,\}|\\\$|\$"), ""),
    (re.compile(r"\\times|\\cdot|\\ast|[×·∗⋅]"), "*"),
    (re.compile(r"\\div|÷"), "/"),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\sqrt(?!\[)"), "√"),
    (re.compile(r"\\approx|≈|\\sim|~|==?=?|<=|>=|!=|≠|≤|≥|\\neq|\\le|\\ge|:="),
     lambda m: "=" if m.group(0) in ("=", "==", "===") else " ≈ "),
    (re.compile(r"[−–]"), "-"),
    (re.compile("[½¼¾⅓⅔]"), lambda m: _VULGAR[m.group(0)]),
    (re.compile(r"(?<!\d)\*\*|\*\*(?!\d)"), " "),  # markdown bold, not a power
    (re.compile(r"^[ \t]*[-*•][ \t]+", re.MULTILINE), " "),  # list bullets are not minus signs
    (re.compile(r"\\[()\[\]]"), " "),
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),  # thousands separators
    (re.compile(r",|\.(?!\d)"), " ; "),  # other commas and sentence periods end an expression
    (re.compile(r"(?<=[\d)])[ \t]*[xX][ \t]*(?=[\d(])|(?<=\s)[xX](?=\s)"), "*"),  # 3 x 4
    (re.compile(r"(?<=\d) (?=\d{3}(?![\d/.]))"), ""),  # 350 000
    (re.compile(r"(\d+)[ \t]+(\d+)/(\d+)"), r"(\1+\2/\3)"),  # mixed numbers: 3 1/2
    (re.compile(r"%[ \t]*of\b"), "% *"),
    (re.compile(r"\{"), "("),
    (re.compile(r"\}"), ")"),
]
_VULGAR = {"½": "(1/2)", "¼": "(1/4)", "¾": "(3/4)", "⅓": "(1/3)", "⅔": "(2/3)"}
_ARITH_CHARS = set("0123456789.+-*/()%^√ \t")
_BINARY_START = re.compile(r"^\s*[*/^+)%]")
_LEADING_NUMBER = re.compile(r"^\s*(-?(?:\d+(?:\.\d*)?|\.\d+))(\s*%)?")


@dataclass
class Claim:
    expression: str
    value: str
    holds: bool


def _brace_group(text: str, i: int) -> int | None:
    """Index just past the balanced {...} group starting at text[i], or None."""
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, min(len(text), i + 2000)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j + 1
    return None


def _replace_fracs(text: str) -> str:
    """\\frac{A}{B} -> ((A)/(B)) for balanced groups, nested ones included."""
    out, i = [], 0
    for m in re.finditer(r"\\[dt]?frac\s*(?=\{)", text):
        if m.start() < i:
            continue  # inside a fraction already rewritten
        a_end = _brace_group(text, m.end())
        b_end = _brace_group(text, a_end) if a_end else None
        if b_end is None:
            continue
        num, den = text[m.end() + 1:a_end - 1], text[a_end + 1:b_end - 1]
        out.append(text[i:m.start()] + f"(({_replace_fracs(num)})/({_replace_fracs(den)}))")
        i = b_end
    return "".join(out) + text[i:]


def normalize(text: str) -> str:
    """Plain-arithmetic rendering of `text`: one claim context per line."""
    text = _replace_fracs(text)
    text = _TEXT_CMD.sub(r" \1 ", text)
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

def _arith_suffix(piece: str) -> str:
    i = len(piece)
    while i > 0 and piece[i - 1] in _ARITH_CHARS:
        i -= 1
    return piece[i:]


def _arith_prefix(piece: str) -> str:
    i = 0
    while i < len(piece) and piece[i] in _ARITH_CHARS:
        i += 1
    return piece[:i]


def _left_expression(piece: str, in_note: bool = False) -> str | None:
    """The computation just before an `=`, or None when it is not a complete one. Inside a
    calculator note (`<<a=b>>`) the whole left side is the computation, even a bare number."""
    suffix = _arith_suffix(piece)
    before = piece[: len(piece) - len(suffix)].rstrip()
    expr = suffix.strip()
    if in_note and not before:
        return expr if evaluate(expr) is not None else None
    if not expr or _BINARY_START.match(expr):
        return None  # "... apples * 2 =": the expression runs into words
    if before and expr.startswith("-") and (before[-1].isalnum()):
        return None
    if before and suffix[:1] == "(" and (before[-1].isalpha() or before[-1] == "\\"):
        return None  # f(2), \binom{11}{4}: a function, not arithmetic
    # Drop unparseable leading fragments such as list numbers ("2) 5 + 3") or stray "(".
    while expr and evaluate(expr) is None:
        cut = re.search(r"[\s()]+", expr)
        if not cut or cut.end() >= len(expr):
            return None
        expr = expr[cut.end():].strip()
        if _BINARY_START.match(expr):
            return None
    if not expr or not _has_operator(expr):
        return None  # a bare number ("Day 2 = 10 miles") is a label, not a computation
    return expr


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
    prefix = _arith_prefix(piece)
    number = _LEADING_NUMBER.match(prefix)
    if not number:  # "= (1+1/2)" is a value; "= x", "= the total" are nothing to compare
        whole = evaluate(prefix) if prefix.lstrip().startswith("(") else None
        return None if whole is None else whole == value
    after = piece[number.end():]
    if after[:1].isalpha():
        return None  # "= 6x", "= 2nd": not a plain value
    shown, percent = number.group(1).rstrip("."), number.group(2)
    if not shown or shown == "-":
        return None
    if _value_matches(value, shown) or (percent and _value_matches(value * 100, shown)):
        return True
    whole = evaluate(prefix)  # "= 2 * 12 = 24": the right side is itself an expression
    if whole is not None:
        return _same(whole, value)
    if after.lstrip()[:1] and after.lstrip()[0] in "+-*/^(√":
        return None  # "= 6^2 + b^2": the right side goes on past what can be evaluated
    return False


def find_claims(text: str) -> list[Claim]:
    """Every checkable `expression = value` claim in `text`, each with whether it holds."""
    notes = [(normalize(note), True) for note in _CALC_NOTE.findall(text)]
    lines = [(line, False) for line in normalize(_CALC_NOTE.sub("", text)).split("\n")]
    claims: list[Claim] = []
    for context, in_note in notes + lines:
        if "=" not in context:
            continue
        pieces = context.split("=")
        for i, (left, right) in enumerate(zip(pieces, pieces[1:])):
            expr = _left_expression(left, in_note=in_note and i == 0)
            if expr is None:
                continue
            value = evaluate(expr)
            if value is None:
                continue
            holds = _right_holds(value, right)
            if holds is not None:
                claims.append(Claim(expr, _arith_prefix(right).strip(), holds))
    return claims
