"""The four operators, pseudonyms that are stable and keyed, the encrypt/unredact round trip,
and the privacy key: where it is read from and what is said when it is missing or wrong."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from forgeline.config.privacy import MaskConfig, OperatorName, PrivacyConfig
from forgeline.privacy import (
    PiiDetector,
    PrivacyKey,
    PrivacyKeyError,
    Redactor,
    TokenError,
    load_privacy_key,
    unredact,
)
from forgeline.privacy.operators import mask_value

TEXT = "Call +44 20 7946 0958, card 4111 1111 1111 1111"
KEY = PrivacyKey.from_secret("a" * 40)
OTHER_KEY = PrivacyKey.from_secret("b" * 40)


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(PrivacyConfig())


def redacted(
    detector: PiiDetector, operator: OperatorName, texts: list[str], key: PrivacyKey = KEY
) -> list[str]:
    return [r.text for r in Redactor(detector, operator, key).redact(texts)]


def test_mask_keeps_the_shape_and_the_last_four_of_a_card(detector: PiiDetector) -> None:
    [text] = redacted(detector, "mask", [TEXT])
    assert text == "Call +** ** **** ****, card **** **** **** 1111"
    custom = Redactor(detector, "mask", mask=MaskConfig(char="#", keep_last={"PHONE_NUMBER": 2}))
    assert custom.redact([TEXT])[0].text == "Call +## ## #### ##58, card #### #### #### ####"
    assert mask_value("1234", "*", 4) == "**34"  # never more than half shown


def test_replace_names_the_type(detector: PiiDetector) -> None:
    [text] = redacted(detector, "replace", [TEXT + " 电话13812345678谢谢"])
    assert text == "Call <PHONE_NUMBER>, card <CREDIT_CARD> 电话<PHONE_NUMBER>谢谢"


def test_pseudonyms_are_stable_keyed_and_irreversible(detector: PiiDetector) -> None:
    first = redacted(detector, "pseudonymize", [TEXT])[0]
    tokens = re.findall(r"<(PHONE_NUMBER|CREDIT_CARD)_([0-9a-f]{16})>", first)
    assert [kind for kind, _ in tokens] == ["PHONE_NUMBER", "CREDIT_CARD"]
    # Same value, same token: in another call, another redactor, another text, and written
    # with other separators.
    again = redacted(detector, "pseudonymize", ["card 4111-1111-1111-1111 again"])[0]
    assert again == f"card <CREDIT_CARD_{tokens[1][1]}> again"
    assert redacted(detector, "pseudonymize", [TEXT])[0] == first
    other_card = redacted(detector, "pseudonymize", ["card 5555 5555 5555 4444"])[0]
    assert tokens[1][1] not in other_card
    # Another key, another token; nothing of the value is in it.
    assert redacted(detector, "pseudonymize", [TEXT], OTHER_KEY)[0] != first
    assert "4111" not in first and "7946" not in first
    assert unredact(first, KEY) == first


def test_encrypt_round_trip_and_wrong_key(detector: PiiDetector) -> None:
    texts = [
        TEXT,
        "身份证11010519491231002X、电话\uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
        "nothing here",
    ]
    encrypted = redacted(detector, "encrypt", texts)
    assert re.fullmatch(r"Call <PHONE_NUMBER:[\w-]+>, card <CREDIT_CARD:[\w-]+>", encrypted[0])
    assert "4111" not in encrypted[0] and "1101051949" not in encrypted[1]
    assert encrypted[2] == "nothing here"
    assert [unredact(text, KEY) for text in encrypted] == texts
    # A fresh nonce per value: the same text encrypts differently each time.
    assert redacted(detector, "encrypt", texts[:1])[0] != encrypted[0]
    with pytest.raises(
        TokenError,
        match=r"cannot decrypt the <PHONE_NUMBER:\.\.\.> token at character 6: the key is not the one",
    ):
        unredact(encrypted[0], OTHER_KEY)


def test_a_token_whose_type_was_changed_does_not_decrypt(detector: PiiDetector) -> None:
    [text] = redacted(detector, "encrypt", ["card 4111 1111 1111 1111"])
    forged = text.replace("<CREDIT_CARD:", "<PHONE_NUMBER:")
    with pytest.raises(TokenError, match="the token was changed"):
        unredact(forged, KEY)


def test_keyed_operators_need_a_key(detector: PiiDetector) -> None:
    with pytest.raises(PrivacyKeyError, match="encrypt needs the project's privacy key"):
        Redactor(detector, "encrypt")


def test_key_comes_from_the_environment_then_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = PrivacyConfig(key_file=Path("secrets/privacy.key"))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/privacy.key").write_text("f" * 40 + "\n")
    monkeypatch.delenv("FORGELINE_PRIVACY_KEY", raising=False)
    with pytest.raises(PrivacyKeyError, match=r"may be read by other users \(mode 644\)"):
        load_privacy_key(config, "encrypt", root=tmp_path)
    (tmp_path / "secrets/privacy.key").chmod(0o600)
    from_file = load_privacy_key(config, "encrypt", root=tmp_path)
    assert from_file.cipher_key == PrivacyKey.from_secret("f" * 40).cipher_key
    monkeypatch.setenv("FORGELINE_PRIVACY_KEY", "e" * 40)
    from_env = load_privacy_key(config, "encrypt", root=tmp_path)
    assert from_env.pseudonym_key == PrivacyKey.from_secret("e" * 40).pseudonym_key
    assert from_env.pseudonym_key != from_env.cipher_key
    given = tmp_path / "given.key"
    given.write_text("g" * 40)
    given.chmod(0o600)
    assert load_privacy_key(config, "encrypt", key_file=given).cipher_key == (
        PrivacyKey.from_secret("g" * 40).cipher_key
    )
    assert "e" * 40 not in repr(from_env) and "aaa" not in repr(KEY)


def test_missing_or_short_key_says_where_a_key_is_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORGELINE_PRIVACY_KEY", raising=False)
    with pytest.raises(PrivacyKeyError) as error:
        load_privacy_key(PrivacyConfig(), "pseudonymize")
    message = str(error.value)
    assert message.startswith("pseudonymize needs the project's privacy key")
    assert "FORGELINE_PRIVACY_KEY" in message and "privacy.key_file" in message
    with pytest.raises(PrivacyKeyError, match=r"privacy key file '.*nowhere.key' does not exist"):
        load_privacy_key(PrivacyConfig(key_file=tmp_path / "nowhere.key"), "encrypt")
    monkeypatch.setenv("FORGELINE_PRIVACY_KEY", "short")
    with pytest.raises(
        PrivacyKeyError, match=r"\$FORGELINE_PRIVACY_KEY has 5 characters; use at least 32"
    ):
        load_privacy_key(PrivacyConfig(), "encrypt")


def test_unredacting_does_not_import_presidio() -> None:
    """Presidio imports transformers and torch (seconds); decrypting needs neither."""
    code = (
        "import sys, forgeline.privacy, forgeline.privacy.tokens, forgeline.privacy.keys; "
        "print(sorted(m for m in sys.modules if m.startswith(('presidio', 'torch'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_only_grouped_numbers_lose_their_separators_in_pseudonyms() -> None:
    from forgeline.privacy.tokens import pseudonym

    key = b"k" * 32
    card = pseudonym("4111 1111 1111 1111", "CREDIT_CARD", key)
    for written in (
        "4111-1111-1111-1111",
        "4111\u20131111\u20131111\u20131111",
        "4111\u00a01111\u00a01111\u00a01111",
    ):
        assert pseudonym(written, "CREDIT_CARD", key) == card
    assert pseudonym("10.0.0.1", "IP_ADDRESS", key) != pseudonym("100.0.1", "IP_ADDRESS", key)
    assert pseudonym("john.smith1@corp.com", "EMAIL_ADDRESS", key) != pseudonym(
        "johnsmith1@corp.com", "EMAIL_ADDRESS", key
    )
