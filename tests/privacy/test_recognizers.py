"""Forgeline's recognizers through the default detector, on positive and negative cases:
checksums right and wrong, numbers touching CJK text, full-width digits at the offsets of the
text as given."""

from __future__ import annotations

import pytest

from forgeline.config.privacy import PrivacyConfig
from forgeline.privacy import PiiDetector
from forgeline.privacy.recognizers import gb11643_check_digit, luhn_valid, normalize_width

RESIDENT_ID = "11010519491231002X"  # the check digit of 11010519491231002 is X
UNIONPAY_19 = "6212345678901234569"  # 19 digits, Luhn-valid


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(PrivacyConfig())


def full_width(text: str) -> str:
    """``text`` in full-width digits, with ideographic spaces, as some CJK input methods type."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) for c in text)


def found(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    """(entity type, the text it covers) of every span, in order."""
    return [(s.entity_type, text[s.start : s.end]) for s in detector.detect([text])[0]]


def test_check_digit_and_luhn_arithmetic() -> None:
    assert gb11643_check_digit("11010519491231002") == "X"
    assert gb11643_check_digit("44030419900101001") == "1"
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert luhn_valid(UNIONPAY_19)


@pytest.mark.parametrize(
    "text",
    [f"身份证号{RESIDENT_ID}、请核实", f"ID: {RESIDENT_ID.lower()}.", "证件440304199001010011号"],
)
def test_resident_id_with_a_right_check_digit_is_found(detector: PiiDetector, text: str) -> None:
    ids = [value for kind, value in found(detector, text) if kind == "CN_RESIDENT_ID"]
    assert len(ids) == 1 and len(ids[0]) == 18 and ids[0] in text


@pytest.mark.parametrize(
    "text",
    [
        "身份证号110105194912310021、请核实",  # check digit 1 where X is right
        "身份证号110105194902310026",  # 31 February 1949 (check digit right for those digits)
        "编号1101051949123100211",  # 19 characters: part of a longer number
    ],
)
def test_resident_id_with_a_wrong_check_digit_or_date_is_not(
    detector: PiiDetector, text: str
) -> None:
    assert "CN_RESIDENT_ID" not in [kind for kind, _ in found(detector, text)]


def test_cards_of_13_to_19_digits_pass_the_luhn_check(detector: PiiDetector) -> None:
    text = (
        f"卡号{UNIONPAY_19}【银联】, visa 4111 1111 1111 1111, mc 2223-0031-2200-3222, "
        "amex 378282246310005, bad 4111 1111 1111 1112, 20 digits 4111 1111 1111 1111 1111"
    )
    cards = [value for kind, value in found(detector, text) if kind == "CREDIT_CARD"]
    assert cards == [UNIONPAY_19, "4111 1111 1111 1111", "2223-0031-2200-3222", "378282246310005"]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("电话13812345678谢谢", "13812345678"),
        ("call +86 138-1234-5678 today", "+86 138-1234-5678"),
        ("手机 0086 138 1234 5678。", "0086 138 1234 5678"),
        ("+8613912345678", "+8613912345678"),
    ],
)
def test_mainland_mobiles_with_and_without_country_code(
    detector: PiiDetector, text: str, number: str
) -> None:
    assert ("PHONE_NUMBER", number) in found(detector, text)


@pytest.mark.parametrize("text", ["编号12812345678号", "订单138123456789", "x13812345678"])
def test_numbers_that_are_not_mainland_mobiles(detector: PiiDetector, text: str) -> None:
    assert "PHONE_NUMBER" not in [kind for kind, _ in found(detector, text)]


def test_full_width_digits_are_found_at_the_offsets_of_the_text_given(
    detector: PiiDetector,
) -> None:
    phone, card = full_width("13812345678"), full_width("4111 1111 1111 1111")
    text = f"电话{phone}、卡号{card}谢谢"
    assert normalize_width(text) == "电话13812345678、卡号4111 1111 1111 1111谢谢"
    spans = detector.detect([text])[0]
    assert [(s.entity_type, text[s.start : s.end]) for s in spans] == [
        ("PHONE_NUMBER", phone),
        ("CREDIT_CARD", card),
    ]
    assert (spans[0].start, spans[0].end) == (2, 13)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        (
            "card 4111\u00a01111\u00a01111\u00a01111 thanks",
            "CREDIT_CARD",
            "4111\u00a01111\u00a01111\u00a01111",
        ),
        (
            "card 4111\u202f1111\u202f1111\u202f1111.",
            "CREDIT_CARD",
            "4111\u202f1111\u202f1111\u202f1111",
        ),
        (
            "card 4111\u20131111\u20131111\u20131111.",
            "CREDIT_CARD",
            "4111\u20131111\u20131111\u20131111",
        ),
        (
            "call +44\u00a020\u00a07946\u00a00958 now",
            "PHONE_NUMBER",
            "+44\u00a020\u00a07946\u00a00958",
        ),
    ],
)
def test_digit_groups_split_by_other_spaces_and_dashes_are_found(
    detector: PiiDetector, text: str, kind: str, value: str
) -> None:
    """No-break, narrow no-break spaces and en dashes, as word processors and some locales put
    them between digit groups, found at their offsets in the text as given."""
    assert (kind, value) in found(detector, text)


@pytest.mark.parametrize(
    "number",
    [
        "+44 20 7946 0958",
        "(37) 788-063",
        "0490 75 40 81",
        "+46 (0)8 928 571 38",
        "+1-903-140-4508x769",
        "259.735.7502",
        "9472 7916",
    ],
)
def test_phone_numbers_in_any_country_style(detector: PiiDetector, number: str) -> None:
    assert ("PHONE_NUMBER", number) in found(detector, f"Please call me on {number} tomorrow")


def test_unbroken_digits_are_a_phone_number_when_a_word_says_so(detector: PiiDetector) -> None:
    text = "Desk: 5403926876\n3660170548-Fax\norder 5403926876 shipped"
    phones = [value for kind, value in found(detector, text) if kind == "PHONE_NUMBER"]
    assert phones == ["5403926876", "3660170548"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("SSN 460-89-9847", "US_SSN"),
        ("on 2000-04-16 11:34:35", "DATE_TIME"),
        ("from 106.31.73.20", "IP_ADDRESS"),
    ],
)
def test_other_digit_shapes_are_not_phone_numbers(
    detector: PiiDetector, text: str, kind: str
) -> None:
    kinds = [k for k, _ in found(detector, text)]
    assert kind in kinds and "PHONE_NUMBER" not in kinds


def test_house_numbers_and_number_lists_are_not_phone_numbers(detector: PiiDetector) -> None:
    text = "sent to 19607 107 Igias Street; items 1 2 3 4 5 6 7; years 1990 2005"
    assert found(detector, text) == []


def test_email_and_url_next_to_cjk_text(detector: PiiDetector) -> None:
    text = "邮箱zhang.wei@example.com.cn谢谢、主页https://www.example.cn/a?b=1。"
    assert found(detector, text) == [
        ("EMAIL_ADDRESS", "zhang.wei@example.com.cn"),
        ("URL", "https://www.example.cn/a?b=1"),
    ]
    assert found(detector, "write to someone@invalid-tld.zzqx") == []


def test_noisy_recognizers_run_only_when_their_entity_is_listed(detector: PiiDetector) -> None:
    text = "driver license F162823540116"
    assert "US_DRIVER_LICENSE" not in detector.entities
    assert found(detector, text) == []
    asked = PiiDetector(
        PrivacyConfig(entities=["US_DRIVER_LICENSE"], entity_thresholds={"US_DRIVER_LICENSE": 0.2})
    )
    assert found(asked, text) == [("US_DRIVER_LICENSE", "F162823540116")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Qty 2 4111 1111 1111 1111", ("CREDIT_CARD", "4111 1111 1111 1111")),
        ("2024-01-05 10:22 4111 1111 1111 1111", ("CREDIT_CARD", "4111 1111 1111 1111")),
        ("No. 3 " + RESIDENT_ID, ("CN_RESIDENT_ID", RESIDENT_ID)),
        ("年龄 28 13812345678", ("PHONE_NUMBER", "13812345678")),
        ("2024-01-05 13812345678", ("PHONE_NUMBER", "13812345678")),
    ],
)
def test_numbers_after_other_digits_are_found(
    detector: PiiDetector, text: str, expected: tuple[str, str]
) -> None:
    # The longer run from the first digit fails its checksum; the number in it must not.
    assert expected in found(detector, text)


def test_an_email_ending_a_sentence_is_found_without_its_full_stop(detector: PiiDetector) -> None:
    assert found(detector, "Write to a.b@mail.example.com.") == [
        ("EMAIL_ADDRESS", "a.b@mail.example.com")
    ]
