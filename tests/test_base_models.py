from pathlib import Path

import pytest

from forgeline.base_models import resolve_base_model
from forgeline.errors import ConfigError


def test_catalogue_name_resolves_to_packaged_weights() -> None:
    path = resolve_base_model("minilm-l6")
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_local_directory_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_base_model(str(tmp_path)) == tmp_path.resolve()


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(ConfigError, match=r"'bert-huge' is neither a known model \(minilm-l6\)"):
        resolve_base_model("bert-huge")
