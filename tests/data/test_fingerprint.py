from pathlib import Path

from forgeline.data import fingerprint_files


def test_fingerprint_changes_with_content_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,b\n")
    first = fingerprint_files({"train": path}, "text|label")
    assert first == fingerprint_files({"train": path}, "text|label")
    assert first["sha256"] != fingerprint_files({"train": path}, "body|label")["sha256"]
    path.write_text("text,label\na,c\n")
    assert first["sha256"] != fingerprint_files({"train": path}, "text|label")["sha256"]
