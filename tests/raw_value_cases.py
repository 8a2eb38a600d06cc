"""The golden table of raw values: what every implementation of ``schemas.raw_rules`` must answer.

Data only (``tests/test_raw_value_rules.py`` runs the implementations over
it). Each case is a field's text as a reader hands it over, with what it
means in a numeric column (the float32 value, missing, or rejected and why)
and in a categorical one (the clean value, or missing). The numbers are
written out; ``nearest_float32`` recomputes each from its text with exact
fractions, so a wrong entry fails too.
"""
from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from fractions import Fraction

MISSING = "<missing>"  # NaN in a numeric column, "" (MISSING_TOKEN as a token) in a categorical one
NOT_A_NUMBER = "<rejected: not a number>"  # batch jobs: "cannot parse ... as a number"; serving: InvalidArgument
NOT_FINITE = "<rejected: not finite>"  # batch jobs: "... is not a finite number"; serving: InvalidArgument

NULL_MARKERS = ("", "?", "NA")
"""The null markers of the schemas the table is read with (``test_raw_value_rules.schema``)."""


@dataclasses.dataclass(frozen=True)
class Case:
    raw: str
    numeric: float | str  # the float32 value (a float), MISSING, NOT_A_NUMBER or NOT_FINITE
    categorical: str  # the clean value, or MISSING
    why: str = ""


def case(raw: str, numeric: float | str, categorical: str | None = None, why: str = "") -> Case:
    """A case whose categorical value is the raw text itself unless given."""
    return Case(raw, numeric, raw if categorical is None else categorical, why)


F32_MAX = 3.4028234663852886e38
SMALLEST_SUBNORMAL = 1.401298464324817e-45

STRIPPED = (
    # plain numbers
    case("5", 5.0),
    case("-3.25", -3.25),
    case("+5", 5.0, why="a leading plus"),
    case(".5", 0.5, why="no integer part"),
    case("5.", 5.0, why="no fraction digits"),
    case("00012", 12.0, why="leading zeros"),
    case("1e5", 100000.0),
    case("1E+5", 100000.0),
    case("+.5e-3", 0.0005000000237487257),
    case("0e999999", 0.0, why="zero with a huge exponent"),
    # strip: ASCII whitespace only
    case(" 5 ", 5.0, "5"),
    case("\t5\r\n", 5.0, "5"),
    case("\v5\f", 5.0, "5"),
    case(" Private ", NOT_A_NUMBER, "Private"),
    case("\u00a05", NOT_A_NUMBER, why="a no-break space is not stripped"),
    case("5\u3000", NOT_A_NUMBER, why="an ideographic space is not stripped"),
    case("\ufeff5", NOT_A_NUMBER, why="a byte-order mark is not stripped"),
    case("\ufeffPrivate", NOT_A_NUMBER),
    case("5 5", NOT_A_NUMBER, why="inner whitespace"),
    # null markers: the whole value after strip, case-sensitive
    case("", MISSING, MISSING),
    case("   ", MISSING, MISSING, why="only spaces: empty after strip"),
    case("?", MISSING, MISSING),
    case(" ? ", MISSING, MISSING),
    case("NA", MISSING, MISSING),
    case("na", NOT_A_NUMBER, why="null markers are case-sensitive"),
    case("??", NOT_A_NUMBER),
    case("N A", NOT_A_NUMBER),
    # not finite
    case("inf", NOT_FINITE),
    case("-inf", NOT_FINITE),
    case("+inf", NOT_FINITE),
    case("Inf", NOT_FINITE),
    case("Infinity", NOT_FINITE),
    case("infinity", NOT_FINITE),
    case("nan", NOT_FINITE, why="nan is not a null marker here"),
    case("NaN", NOT_FINITE),
    case("-nan", NOT_FINITE),
    case("INF", NOT_FINITE, why="inf and nan in any case"),
    case("iNfInItY", NOT_FINITE),
    case("NAN", NOT_FINITE),
    case("nan(123)", NOT_FINITE, why="C's nan(chars)"),
    case("snan", NOT_A_NUMBER),
    case("infinit", NOT_A_NUMBER),
    case("inf.", NOT_A_NUMBER),
    case("1e400", NOT_FINITE, why="beyond float64 too"),
    case("-1e400", NOT_FINITE),
    case("4e38", NOT_FINITE, why="beyond float32's range"),
    case("1e39", NOT_FINITE),
    case("3.4028235e38", F32_MAX, why="float32's max"),
    case("-3.4028235e38", -F32_MAX),
    case("3.40282356779733661637539395458142568448e38", NOT_FINITE, why="exactly half an ulp above the max"),
    case("1" * 40, NOT_FINITE, why="a 40-digit integer"),
    # underflow and signed zero
    case("1e-50", 0.0, why="underflow is kept"),
    case("-1e-50", -0.0),
    case("1e-45", SMALLEST_SUBNORMAL),
    case("1e-40", 9.99994610111476e-41, why="a subnormal"),
    case("-0", -0.0),
    case("-0.0", -0.0),
    # long numbers: rounded once to the nearest float32
    case("1" * 38, 1.1111111182914487e37),
    case("1" * 39, 1.1111110978868266e38),
    case("0." + "0" * 400 + "1", 0.0),
    case("3.14159265358979323846264338327950288", 3.1415927410125732),
    case("16777217", 16777216.0, why="a tie between two float32s: to even"),
    case("16777217.000000000000000001", 16777218.0, why="just above the tie"),
    case("1.000000059604644775390625", 1.0, why="the tie between 1 and the next float32: to even"),
    case("1.00000005960464477539062500000000001", 1.0000001192092896,
         why="just above that tie: through float64 it would round to 1.0"),
    # not decimal numbers
    case("0x10", NOT_A_NUMBER, why="hexadecimal"),
    case("0X1p3", NOT_A_NUMBER, why="a hexadecimal float"),
    case("1_000", NOT_A_NUMBER, why="a digit separator"),
    case("1,000", NOT_A_NUMBER),
    case("1,5", NOT_A_NUMBER, why="a decimal comma"),
    case("\u0663", NOT_A_NUMBER, why="an Arabic-Indic digit"),
    case("\u0661\u0662", NOT_A_NUMBER),
    case("\uff15", NOT_A_NUMBER, why="a full-width digit"),
    case("\u00b2", NOT_A_NUMBER, why="a superscript digit"),
    case("\u00bd", NOT_A_NUMBER, why="a vulgar fraction"),
    case("1e", NOT_A_NUMBER),
    case("e5", NOT_A_NUMBER),
    case("--5", NOT_A_NUMBER),
    case("1d5", NOT_A_NUMBER),
    case("5f", NOT_A_NUMBER),
    case(".", NOT_A_NUMBER),
    case("abc", NOT_A_NUMBER),
)
"""Read as CSV with ``strip: true`` and ``NULL_MARKERS``."""

UNSTRIPPED = (
    case("5", 5.0),
    case(" 5", NOT_A_NUMBER, why="nothing is stripped"),
    case("5 ", NOT_A_NUMBER),
    case("\t5", NOT_A_NUMBER),
    case("5\n", NOT_A_NUMBER),
    case(" ", NOT_A_NUMBER, why="a space is a value, not a null marker"),
    case(" ? ", NOT_A_NUMBER),
    case("?", MISSING, MISSING),
    case("", MISSING, MISSING),
)
"""Read with ``strip: false``."""

MULTIVALENT = (
    ("a|b", ("a", "b")),
    (" a | b ", ("a", "b")),
    ("a||b", ("a", "b")),
    ("a|a", ("a", "a")),
    ("|", (MISSING,)),
    ("", (MISSING,)),
    (" | ", (MISSING,)),
    ("?", (MISSING,)),
    ("a|?", ("a", "?")),
    ("a|\tb\n|", ("a", "b")),
    ("a|\u00a0b\u00a0", ("a", "\u00a0b\u00a0")),
    ("a|\u3000|b", ("a", "\u3000", "b")),
    ("x\u0085", ("x\u0085",)),
)
"""(raw text, its tokens) of a multivalent column with delimiter ``|``, read as ``STRIPPED``: null markers
apply to the whole value, parts lose ASCII whitespace only, empty parts go."""


def nearest_float32(text: str) -> float:
    """The float32 nearest to the decimal ``text`` (ties to even; inf beyond the range), with exact fractions."""
    q = Fraction(Decimal(text))
    sign = -1.0 if text.lstrip().startswith("-") else 1.0
    q = abs(q)
    if q == 0:
        return math.copysign(0.0, sign)
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1
    ulp = Fraction(2) ** (max(e, -126) - 23)  # below 2**-126 the spacing stays that of the subnormals
    n, rest = divmod(q, ulp)
    if rest * 2 > ulp or (rest * 2 == ulp and n % 2 == 1):
        n += 1
    value = n * ulp
    return sign * (math.inf if value >= Fraction(2) ** 128 else float(value))
