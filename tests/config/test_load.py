from pathlib import Path

import pytest

from forgeline.config import TextClassificationConfig, load_project
from forgeline.errors import ConfigError
from tests.conftest import MINIMAL_YAML, write_project


def test_minimal_config_gets_defaults(tmp_path: Path, labelled_csv: str) -> None:
    config = write_project(tmp_path, MINIMAL_YAML, {"data/train.csv": labelled_csv})
    project = load_project(config)
    text_config = project.config_for(TextClassificationConfig)
    assert text_config.base_model == "minilm-l6"
    assert text_config.training.max_length == "auto"
    assert project.data_files()["train"] == tmp_path / "data/train.csv"
    assert project.registry_dir == tmp_path / "models"


def test_missing_data_file_names_field_and_file(tmp_path: Path) -> None:
    config = write_project(tmp_path, MINIMAL_YAML)
    with pytest.raises(ConfigError, match=r"data\.train: no such file 'data/train\.csv'"):
        load_project(config)


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path, labelled_csv: str) -> None:
    config = write_project(
        tmp_path, MINIMAL_YAML + "training:\n  epoch: 3\n", {"data/train.csv": labelled_csv}
    )
    with pytest.raises(ConfigError, match=r"training\.epoch: unknown key"):
        load_project(config)


def test_wrong_type_names_field_and_value(tmp_path: Path, labelled_csv: str) -> None:
    config = write_project(
        tmp_path, MINIMAL_YAML + "training:\n  batch_size: many\n", {"data/train.csv": labelled_csv}
    )
    with pytest.raises(ConfigError) as error:
        load_project(config)
    message = str(error.value)
    assert str(config) in message
    assert "training.batch_size" in message and "'many'" in message


def test_missing_required_key(tmp_path: Path) -> None:
    config = write_project(tmp_path, "name: demo\ntask: text-classification\n")
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        load_project(config)


def test_unknown_task_is_rejected(tmp_path: Path, labelled_csv: str) -> None:
    text = MINIMAL_YAML.replace("text-classification", "image-segmentation")
    config = write_project(tmp_path, text, {"data/train.csv": labelled_csv})
    with pytest.raises(
        ConfigError,
        match=r"task: choose one of chat, knowledge-qa, tabular-classification, text-cl",
    ):
        load_project(config)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    config = write_project(tmp_path, "name: demo\ntask: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: not valid YAML"):
        load_project(config)


def test_an_unknown_encoding_is_rejected_with_examples(tmp_path: Path, labelled_csv: str) -> None:
    text = MINIMAL_YAML + "  encoding: klingon\n"
    config = write_project(tmp_path, text, {"data/train.csv": labelled_csv})
    with pytest.raises(ConfigError, match=r"data\.encoding: unknown encoding 'klingon'"):
        load_project(config)


def test_a_delimiter_is_one_character(tmp_path: Path, labelled_csv: str) -> None:
    text = MINIMAL_YAML + "  delimiter: ';;'\n"
    config = write_project(tmp_path, text, {"data/train.csv": labelled_csv})
    with pytest.raises(ConfigError, match=r"data\.delimiter"):
        load_project(config)


def test_fallback_threshold_must_be_a_probability(tmp_path: Path, labelled_csv: str) -> None:
    text = MINIMAL_YAML + "fallback:\n  label: other\n  threshold: 1.5\n"
    config = write_project(tmp_path, text, {"data/train.csv": labelled_csv})
    with pytest.raises(
        ConfigError,
        match=r"fallback: threshold must be a probability between 0 and 1, or 'auto' \(got 1\.5\)"
        r"; energy thresholds need score: energy",
    ):
        load_project(config)


def test_an_energy_threshold_may_be_any_number(tmp_path: Path, labelled_csv: str) -> None:
    text = MINIMAL_YAML + "fallback: {label: other, score: energy, threshold: 7.5}\n"
    config = write_project(tmp_path, text, {"data/train.csv": labelled_csv})
    fallback = load_project(config).config_for(TextClassificationConfig).fallback
    assert fallback is not None and (fallback.score, fallback.threshold) == ("energy", 7.5)


def test_max_length_outside_its_range_is_refused(tmp_path: Path, labelled_csv: str) -> None:
    text = MINIMAL_YAML + "training: {max_length: 4}\n"
    config = write_project(tmp_path, text, {"data/train.csv": labelled_csv})
    with pytest.raises(ConfigError, match=r"training\.max_length: .*between 8 and 512, or 'auto'"):
        load_project(config)


def test_no_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_project(tmp_path / "forgeline.yaml")


def test_bad_model_name_is_rejected(tmp_path: Path, labelled_csv: str) -> None:
    config = write_project(
        tmp_path, MINIMAL_YAML.replace("demo", "Demo Model"), {"data/train.csv": labelled_csv}
    )
    with pytest.raises(ConfigError, match=r"name: String should match pattern"):
        load_project(config)


def test_union_errors_read_as_one_line(tmp_path: Path, labelled_csv: str) -> None:
    text = MINIMAL_YAML + "fallback:\n  label: other\n  threshold: automatic\n"
    config = write_project(tmp_path, text, {"data/train.csv": labelled_csv})
    with pytest.raises(ConfigError) as error:
        load_project(config)
    [line] = [row for row in str(error.value).splitlines() if "threshold" in row]
    assert line.strip().startswith("fallback.threshold: ")
    assert "'auto'" in line and "'automatic'" in line and "literal[" not in line


def test_unsupported_data_file_type(tmp_path: Path) -> None:
    text = MINIMAL_YAML.replace("train.csv", "train.txt")
    config = write_project(tmp_path, text, {"data/train.txt": "hello"})
    with pytest.raises(ConfigError, match=r"data\.train: unsupported file type '\.txt'"):
        load_project(config)
