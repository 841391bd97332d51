import logging

import pytest

from forgeline.credentials import HideCredentials, hide_credentials, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0?password=s3cret&db=1", "redis://cache:6379/0?password=***&db=1"),
        (
            "postgresql+psycopg://app:s3cret@db.internal/forge?sslmode=require",
            "postgresql+psycopg://app:***@db.internal/forge?sslmode=require",
        ),
        ("sqlite:///forgeline.db", "sqlite:///forgeline.db"),
    ],
)
def test_urls_lose_their_passwords_wherever_they_are(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "text",
    [
        "cannot reach redis://u:s3cret@h:1/0: refused",
        "connect failed: password='s3cret'",
        'options {"password": "s3cret"}',
        "dsn host=db password=s3cret user=app",
        "token: s3cret, retrying",
    ],
)
def test_credentials_in_free_text_are_masked(text: str) -> None:
    assert "s3cret" not in hide_credentials(text)


def test_log_records_are_masked_whatever_logged_them(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("some.library")
    handler = caplog.handler
    handler.addFilter(HideCredentials())
    try:
        logger.error("could not connect to %s", "redis://:s3cret@cache:6379")
        try:
            raise ConnectionError("password=s3cret rejected")
        except ConnectionError:
            logger.exception("failed")
    finally:
        handler.removeFilter(handler.filters[-1])
    assert "s3cret" not in caplog.text
    assert "redis://:***@cache:6379" in caplog.text
