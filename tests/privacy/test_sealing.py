from __future__ import annotations

import stat
from pathlib import Path

import pytest

from forgeline.errors import ConfigError
from forgeline.privacy.sealing import (
    KeyRing,
    SealError,
    is_sealed,
    load_key_ring,
    new_key_line,
    parse_key_ring,
)

SECRET_A = "a" * 40
SECRET_B = "b" * 40


def test_a_sealed_value_opens_with_its_context_only() -> None:
    ring = KeyRing.from_secrets([("k1", SECRET_A)])
    sealed = ring.seal(b'{"label": "Maria Lopez"}', b"tenant 1")
    assert is_sealed(sealed) and sealed.startswith("fl1:k1:")
    assert "Maria" not in sealed
    assert ring.open(sealed, b"tenant 1") == b'{"label": "Maria Lopez"}'
    with pytest.raises(SealError, match="altered"):
        ring.open(sealed, b"tenant 2")


def test_sealing_twice_gives_different_text() -> None:
    ring = KeyRing.from_secrets([("k1", SECRET_A)])
    assert ring.seal(b"same", b"c") != ring.seal(b"same", b"c")


def test_an_altered_value_does_not_open() -> None:
    ring = KeyRing.from_secrets([("k1", SECRET_A)])
    sealed = ring.seal(b"reply", b"c")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError, match="altered"):
        ring.open(flipped, b"c")
    with pytest.raises(SealError, match="not a sealed value"):
        ring.open("{}", b"c")


def test_a_renamed_key_id_does_not_open_either() -> None:
    """The key id is bound in: editing it to another key's id fails like tampering."""
    ring = KeyRing.from_secrets([("k1", SECRET_A), ("k2", SECRET_A)])
    sealed = ring.seal(b"reply", b"c")
    with pytest.raises(SealError):
        ring.open(sealed.replace("fl1:k1:", "fl1:k2:"), b"c")


def test_rotation_the_first_key_seals_and_older_keys_still_open() -> None:
    old = KeyRing.from_secrets([("k1", SECRET_A)])
    sealed_before = old.seal(b"before", b"c")
    rotated = KeyRing.from_secrets([("k2", SECRET_B), ("k1", SECRET_A)])
    assert rotated.open(sealed_before, b"c") == b"before"
    sealed_after = rotated.seal(b"after", b"c")
    assert sealed_after.startswith("fl1:k2:")
    with pytest.raises(SealError, match="'k2', which is not among"):
        old.open(sealed_after, b"c")


def test_key_ring_text_lines_and_commas() -> None:
    ring = parse_key_ring(f"# comment\nk2 {SECRET_B}\n\nk1:{SECRET_A}  # old\n", "test")
    assert ring.sealing_key_id == "k2"
    assert [key_id for key_id, _ in ring.keys] == ["k2", "k1"]
    assert [k for k, _ in parse_key_ring(f"k2 {SECRET_B},k1 {SECRET_A}", "t").keys] == ["k2", "k1"]
    assert SECRET_A not in repr(ring)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("# only a comment", "holds no key"),
        ("k1 short", "the secret has 5 characters"),
        (f"bad/id {SECRET_A}", "entry 1: write each key as 'ID SECRET'"),
        (f"k1 {SECRET_A}\nk1 {SECRET_B}", "key id 'k1' is there twice"),
        ("k1", "the secret has 0 characters"),
    ],
)
def test_key_ring_text_errors_name_the_entry_and_never_the_secret(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_key_ring(text, "$FORGELINE_DATA_KEYS")
    assert "$FORGELINE_DATA_KEYS" in str(raised.value)
    assert SECRET_B not in str(raised.value)


def test_a_missing_key_file_is_made_for_the_owner_only_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_DATA_KEYS", raising=False)
    file = tmp_path / "forgeline.keys"
    ring, notice = load_key_ring("TEST_DATA_KEYS", file)
    assert notice is not None and str(file) in notice
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["forgeline.keys"]  # no draft left behind
    again, second_notice = load_key_ring("TEST_DATA_KEYS", file)
    assert second_notice is None
    assert again.open(ring.seal(b"x", b"c"), b"c") == b"x"


def test_the_environment_variable_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "forgeline.keys"
    file.write_text(new_key_line() + "\n")
    monkeypatch.setenv("TEST_DATA_KEYS", f"env1 {SECRET_A}")
    ring, notice = load_key_ring("TEST_DATA_KEYS", file)
    assert ring.sealing_key_id == "env1" and notice is None


def test_an_unreadable_key_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_DATA_KEYS", raising=False)
    file = tmp_path / "forgeline.keys"
    file.write_bytes(b"\xff\xfe not text")
    file.chmod(0o600)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_key_ring("TEST_DATA_KEYS", file)


def test_a_key_file_others_may_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_DATA_KEYS", raising=False)
    file = tmp_path / "forgeline.keys"
    file.write_text(f"k1 {SECRET_A}\n")
    file.chmod(0o640)
    with pytest.raises(ConfigError, match=r"may be read by other users \(mode 640\); .*chmod 600"):
        load_key_ring("TEST_DATA_KEYS", file)
