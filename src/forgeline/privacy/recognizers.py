"""Pattern recognizers Forgeline adds to Presidio's, or puts in place of ones with known holes.

- Chinese identifiers: resident ID numbers (GB 11643 check digit) and mainland mobile numbers.
- Payment cards of 13 to 19 digits with the Luhn check: Presidio's CreditCardRecognizer misses
  18- and 19-digit cards (UnionPay issues 19-digit ones) and 2-series Mastercards.
- Phone numbers by shape: Presidio's PhoneRecognizer (the phonenumbers matcher) took 2 s on
  a 20 KB text of digit groups and misses numbers outside its eight default regions (it found
  10 of the 19 phone numbers of the labelled PII test split).
- Email addresses and URLs with ASCII patterns: Presidio's take CJK characters as word
  characters (``邮箱a@b.com谢谢`` became one invalid address), its email check looks the
  public-suffix list up on the internet first, and its URL pattern is 40 times slower.

Every pattern here bounds digits with lookarounds on ASCII letters and digits rather than
``\\b``: CJK characters count as word characters, so ``\\b`` finds no edge in
``电话13812345678谢谢``. Full-width digits (U+FF10 to U+FF19), the no-break and thin spaces
and the dashes typed between digit groups are translated to ASCII before any of this runs
(:func:`normalize_width`), one character for one, so offsets stay those of the original text.

Milliseconds of each recognizer on 20 KB of text, one core, best of 3 (printed by
``benchmarks/pii_bench.py``): the labelled PII test texts joined, and 20 KB of "1234 5678 "
groups (the worst case for digit patterns). The last three are Presidio's, replaced here.

===================================  ======  ======
recognizer                           texts   digits
===================================  ======  ======
PhoneNumberRecognizer                   2.4     9.8
PaymentCardRecognizer                   0.9    19.4 *
ChineseMobileRecognizer                 0.1     0.5
ChineseResidentIdRecognizer             0.4     2.3
AsciiEmailRecognizer                    0.4     0.0
WebUrlRecognizer                        0.6     0.2
Presidio IbanRecognizer                 0.3     0.0
Presidio IpRecognizer                   4.3     7.3
Presidio UsSsnRecognizer                1.0     1.7
Presidio DateRecognizer                 0.7     2.3
Presidio CryptoRecognizer               0.5     1.2
Presidio UsLicenseRecognizer (opt-in)   7.1     6.3
(Presidio PhoneRecognizer)            130.8  2079.6
(Presidio UrlRecognizer)               23.8     0.3
(Presidio CreditCardRecognizer)         1.0    26.7
===================================  ======  ======

* Trying every start (:class:`ChecksumRecognizer`); measured with other work on the
  machine (2.6 ms before, when it took only the leftmost match).
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from typing import ClassVar

import regex
import tldextract
from presidio_analyzer import (
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts

_SPACES = (0x00A0, 0x2007, 0x2009, 0x202F, 0x3000)
"""No-break, figure, thin and narrow no-break spaces (what word processors and locales put
between digit groups: ``4111\u00a01111``) and the ideographic space."""
_DASHES = (0x2010, 0x2011, 0x2012, 0x2013, 0x2212)
"""Hyphens, the figure dash, the en dash and the minus sign."""
_TO_ASCII = (
    {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
    | dict.fromkeys(_SPACES, ord(" "))
    | dict.fromkeys(_DASHES, ord("-"))
)
"""Full-width ASCII (U+FF01 to U+FF5E: digits, letters, plus, hyphen, at, ...), the spaces and
the dashes to their ASCII forms: one character for one, so offsets in the result are offsets
in the original."""


def normalize_width(text: str) -> str:
    """``text`` with full-width ASCII, other spaces and dashes as ASCII, at the same offsets."""
    return text.translate(_TO_ASCII)


def digits_of(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a payment card number."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK = "10X98765432"


def gb11643_check_digit(first17: str) -> str:
    """The 18th character of a Chinese resident ID (ISO 7064 MOD 11-2, X standing for 10)."""
    total = sum(int(d) * w for d, w in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK[total % 11]


# Edges of a number: not glued to an ASCII letter or digit; CJK characters and punctuation
# may touch it. At the end, not followed by a digit across one separator either (a pattern
# does not stop inside a run of digit groups). A start just after a digit and a separator is
# allowed: checksum recognizers try every start (ChecksumRecognizer), since what precedes a
# card number may be a quantity or a time ("Qty 2 4111 1111 1111 1111").
_START = r"(?<![0-9A-Za-z])"
_END = r"(?![ .-]?[0-9])(?![A-Za-z])"


class ChecksumRecognizer(PatternRecognizer):
    """A pattern recognizer whose matches a checksum confirms, tried at every start position.

    Presidio's loop takes the leftmost match and goes on after it: when digits precede a
    number ("2024-01-05 10:22 4111 1111 1111 1111"), the leftmost match is the longer run
    from the first digit group, its checksum fails, and the number in it is never tried.
    Here every start is tried (``regex``'s overlapped matching, Presidio's own regex engine)
    and the checksum keeps what is a number; overlapping finds of one type are merged by the
    detector.
    """

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        flags = regex_flags or self.global_regex_flags
        found = []
        # Presidio sets both in an untyped __init__.
        name: str = self.name  # type: ignore[has-type]
        patterns: list[Pattern] = self.patterns  # type: ignore[has-type]
        for pattern in patterns:
            for match in regex.finditer(pattern.regex, text, flags=flags, overlapped=True):
                start, end = match.span()
                if start == end or not self.validate_result(text[start:end]):
                    continue
                found.append(
                    RecognizerResult(
                        entity_type=self.supported_entities[0],
                        start=start,
                        end=end,
                        score=EntityRecognizer.MAX_SCORE,
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        },
                    )
                )
        return list(EntityRecognizer.remove_duplicates(found))


class ChineseResidentIdRecognizer(ChecksumRecognizer):
    """18-character resident identity numbers (GB 11643-1999): region, birth date, sequence
    and a check digit that may be X. Scored 1 when the date is real and the check digit
    right; dropped otherwise."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "resident ID (18 characters)",
            _START + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
            r"\d{3}[0-9Xx]" + _END,
            0.3,
        )
    ]

    def __init__(self, supported_language: str = "zh") -> None:
        super().__init__(
            supported_entity="CN_RESIDENT_ID",
            patterns=self.PATTERNS,
            supported_language=supported_language,
            name="ChineseResidentIdRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool:
        try:
            date(int(pattern_text[6:10]), int(pattern_text[10:12]), int(pattern_text[12:14]))
        except ValueError:  # 19990231
            return False
        return gb11643_check_digit(pattern_text[:17]) == pattern_text[17].upper()


class ChineseMobileRecognizer(PatternRecognizer):
    """Mainland mobile numbers, 1[3-9]x and 8 more digits, with or without +86 (or 0086),
    written whole or in 3-4-4 groups separated by spaces or dashes."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "mainland mobile",
            # After a digit and a space it may start ("2024-01-05 13812345678", "年龄 28
            # 13812345678"); after a digit and a dash it is the tail of another number.
            r"(?<![0-9A-Za-z+])(?<![0-9]-)(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _END,
            0.6,
        )
    ]

    def __init__(self, supported_language: str = "zh") -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            patterns=self.PATTERNS,
            supported_language=supported_language,
            name="ChineseMobileRecognizer",
        )


class PaymentCardRecognizer(ChecksumRecognizer):
    """Card numbers of 13 to 19 digits (issuers' first digits 1 to 6), or 12 for Maestro
    (50, 56 to 69), whole or grouped by spaces or dashes, that pass the Luhn check (scored 1;
    the rest dropped)."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern("card number", _START + r"[1-6](?:[ -]?\d){12,18}" + _END, 0.3),
        Pattern("Maestro card number", _START + r"(?:5[06-9]|6\d)(?:[ -]?\d){10}" + _END, 0.3),
    ]

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="CREDIT_CARD",
            patterns=self.PATTERNS,
            supported_language=supported_language,
            name="PaymentCardRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool:
        return luhn_valid(digits_of(pattern_text))


# Shapes of other things that a run of digit groups can be: a phone match that is one of
# them (an SSN, an IPv4 address, two years), or starts with a date (which a time may follow),
# is dropped.
_NOT_PHONES = re.compile(
    r"\d{3}-\d{2}-\d{4}|\d{1,3}(?:\.\d{1,3}){3}|(?:19|20)\d\d[ -](?:19|20)\d\d"
)
_DATE_FIRST = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d)|\d{1,2}[-./]\d{1,2}[-./]\d{4}")
_PHONE_WORDS = "phone|tel|telephone|fax|mobile|cell|desk|office|home|work|call|电话|手机|传真"
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension)\s?\d{1,6}$", re.IGNORECASE)


class PhoneNumberRecognizer(PatternRecognizer):
    """Phone numbers by their written shape, in any country's style: an optional +country
    code, (0) and (area code), then two to six groups of digits separated by a space, dash or
    dot, and an optional extension; 7 to 15 digits in all. Also +country code and 7 to 15
    digits unbroken, or named a phone by a word next to them. Regular expressions only, no
    per-region parsing: 10 ms on 20 KB of digit groups where phonenumbers took 2 s."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "grouped digits",
            r"(?<![0-9A-Za-z+])(?<![0-9][ .-])(?:(?:\+|00)\d{1,3}[ .-]?)?(?:\(0\)[ .-]?)?"
            r"(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]\d{1,8}){1,5}"
            r"(?:[ ]?(?:x|ext\.?|extension)[ ]?\d{1,6})?" + _END,
            0.5,
        ),
        Pattern(
            "+country code and digits",
            r"(?<![0-9A-Za-z+])\+\d{7,15}(?![0-9A-Za-z])",
            0.6,
        ),
        # Unbroken digits are a phone number when a word next to them says so ("Fax:
        # 9498777106", "3660170548-Fax"): the context words Presidio would need a spaCy
        # model for, written into the pattern. (?=\d) first keeps the look-behind to digits.
        Pattern(
            "digits named a phone",
            rf"(?<![0-9A-Za-z+])(?=\d)(?<=(?:{_PHONE_WORDS})[^\n0-9A-Za-z]{{0,3}})\d{{7,15}}"
            r"(?![0-9A-Za-z])",
            0.5,
        ),
        Pattern(
            "digits named a phone after them",
            rf"(?<![0-9A-Za-z+])\d{{7,15}}(?=[ -]?(?:{_PHONE_WORDS})(?![A-Za-z]))",
            0.5,
        ),
    ]

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            patterns=self.PATTERNS,
            supported_language=supported_language,
            name="PhoneNumberRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        number = _EXTENSION.sub("", pattern_text)
        if not 7 <= len(digits_of(number)) <= 15:
            return False
        if _NOT_PHONES.fullmatch(number) or _DATE_FIRST.match(number):
            return False
        groups = re.findall(r"\d+", number.split(")")[-1])
        # Past the first, a group of one digit is a list of numbers, not a phone number; and
        # a local number in two groups ends in four digits or more (555-0134, 7946 0958),
        # where a house number and a street number ("19607 107 Igias Street") need not.
        if any(len(group) < 2 for group in groups[1:]):
            return False
        local = not number.startswith(("+", "00", "("))
        if local and len(groups) == 2 and len(groups[1]) < 4:
            return False
        return None  # keep the pattern's score: a shape is not a checksum


@cache
def _offline_domains() -> tldextract.TLDExtract:
    # The public-suffix list bundled with tldextract: Presidio's default extractor fetches the
    # list from the internet first, which an offline machine waits on and logs a traceback for.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class AsciiEmailRecognizer(PatternRecognizer):
    """Email addresses with an ASCII local part and domain, valid when the domain ends in a
    public suffix (scored 1; dropped otherwise)."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "email address",
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
            # Possessive (++): a long run of labels with no suffix after it fails at once,
            # where backtracking through it made this quadratic (1 s on 80 KB of "a.").
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.(?=[A-Za-z0-9]))++[A-Za-z]{2,24}"
            r"(?![A-Za-z0-9-])",
            0.5,
        )
    ]

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="EMAIL_ADDRESS",
            patterns=self.PATTERNS,
            supported_language=supported_language,
            name="AsciiEmailRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool:
        return bool(_offline_domains()(pattern_text.rsplit("@", 1)[1]).suffix)


class WebUrlRecognizer(PatternRecognizer):
    """Web addresses that say they are one (http://, https:// or www.), up to a space, a
    quote, a bracket or CJK text, without trailing punctuation. Bare domains are left alone:
    they are mostly the domain of an email address or a company's name."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "web address",
            r"(?<![A-Za-z0-9])(?:https?://|www\.)"
            r"[^\s<>\"'()\[\]{}\u3000-\u303f\u3400-\u9fff\uff00-\uffef]*"
            r"[A-Za-z0-9/#=&_%~-]",
            0.6,
        )
    ]

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="URL",
            patterns=self.PATTERNS,
            supported_language=supported_language,
            name="WebUrlRecognizer",
        )
