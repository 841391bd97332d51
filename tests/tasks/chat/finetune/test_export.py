"""The fine-tuned model's way back to llama.cpp: GGUF export, and the parity gate that refuses
exports which llama.cpp would not serve like the transformers model they came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from gguf import GGMLQuantizationType, GGUFReader, Keys, LlamaFileType

from forgeline.base_models import resolve_gguf
from forgeline.tasks.base import ChatMessage
from forgeline.tasks.chat._native import NativeModel
from forgeline.tasks.chat.finetune import export
from forgeline.tasks.chat.finetune.export import MetadataValue, Quantization, write_gguf
from forgeline.tasks.chat.finetune.parity import ParityReport, check_parity
from forgeline.tasks.chat.finetune.training import load_base

# Replies of a sentence, not a word: perplexity over a handful of tokens swings by several
# percent between f16 and q8_0 on noise alone.
CONVERSATIONS: list[list[ChatMessage]] = [
    [
        ChatMessage(role="user", content="What is the capital of France?"),
        ChatMessage(role="assistant", content="The capital of France is Paris."),
    ],
    [
        ChatMessage(role="user", content="Give me a tip for better sleep."),
        ChatMessage(
            role="assistant",
            content="Go to bed at the same time every night and keep your bedroom dark.",
        ),
    ],
    [
        ChatMessage(role="system", content="You are a terse assistant."),
        ChatMessage(role="user", content="How many legs does a spider have?"),
        ChatMessage(role="assistant", content="A spider has eight legs."),
    ],
]
TOKENIZER_KEYS = [
    Keys.Tokenizer.MODEL,
    Keys.Tokenizer.PRE,
    Keys.Tokenizer.LIST,
    Keys.Tokenizer.TOKEN_TYPE,
    Keys.Tokenizer.MERGES,
    Keys.Tokenizer.BOS_ID,
    Keys.Tokenizer.EOS_ID,
    Keys.Tokenizer.UNK_ID,
    Keys.Tokenizer.PAD_ID,
    Keys.Tokenizer.ADD_BOS,
    Keys.Tokenizer.CHAT_TEMPLATE,
]


@dataclass(frozen=True)
class Base:
    weights: Path
    model: Any
    tokenizer: Any


@pytest.fixture(scope="module")
def base() -> Base:
    weights, _ = resolve_gguf("smollm2-135m")
    model, tokenizer = load_base(weights)
    return Base(weights, model, tokenizer)


@pytest.fixture(scope="module")
def exports(base: Base, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One faithful export per quantization, shared by the tests that only read them."""
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for quantization in ("f16", "q8_0"):
        paths[quantization] = folder / f"{quantization}.gguf"
        write_gguf(base.model, base.weights, paths[quantization], quantization)
    return paths


def broken_export(
    base: Base, folder: Path, metadata: dict[str, MetadataValue] | None = None
) -> ParityReport:
    """Parity of an export written with ``metadata`` changed; q8_0, the smaller file."""
    path = folder / "broken.gguf"
    write_gguf(base.model, base.weights, path, "q8_0", metadata=metadata)
    return check_parity(base.model, base.tokenizer, path, CONVERSATIONS[:2], max_new_tokens=8)


def failure(report: ParityReport, check: str) -> str:
    """The one failure message of ``check``; the gate refused the export."""
    assert not report.passed
    found = [line for line in report.failures if line.startswith(f"{check}: ")]
    assert len(found) == 1, report.failures
    return found[0]


@pytest.mark.parametrize("quantization", ["f16", "q8_0"])
def test_the_export_keeps_the_base_metadata(
    base: Base, exports: dict[str, Path], quantization: Quantization
) -> None:
    original, written = GGUFReader(base.weights), GGUFReader(exports[quantization])
    for key in TOKENIZER_KEYS:
        field = written.get_field(key)
        assert field is not None, key
        assert field.contents() == original.fields[key].contents(), key
        assert field.types == original.fields[key].types, key
    # Every key of the base is there, the ones that describe the file set for the new one.
    assert set(written.fields) == set(original.fields)
    file_type = {"f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0}
    assert written.fields[Keys.General.FILE_TYPE].contents() == file_type[quantization]
    tensors = {tensor.name: tensor for tensor in written.tensors}
    # Tied embeddings stay tied: no output.weight, as in the base.
    assert set(tensors) == {tensor.name for tensor in original.tensors}
    assert "output.weight" not in tensors
    weights = {"f16": GGMLQuantizationType.F16, "q8_0": GGMLQuantizationType.Q8_0}
    assert tensors["blk.0.attn_q.weight"].tensor_type == weights[quantization]
    assert tensors["token_embd.weight"].tensor_type == weights[quantization]
    assert tensors["blk.0.attn_norm.weight"].tensor_type == GGMLQuantizationType.F32


def test_q_and_k_are_written_in_llama_cpp_order(base: Base, exports: dict[str, Path]) -> None:
    """transformers un-permutes q/k rows when it loads a GGUF; the export permutes them back,
    so an unchanged model's f16 export holds the base file's (dequantized) rows."""
    from gguf.quants import dequantize

    original = {tensor.name: tensor for tensor in GGUFReader(base.weights).tensors}
    written = {tensor.name: tensor for tensor in GGUFReader(exports["f16"]).tensors}
    for name in ("blk.3.attn_q.weight", "blk.3.attn_k.weight"):
        expected = dequantize(original[name].data, original[name].tensor_type)
        np.testing.assert_allclose(written[name].data, expected, atol=1e-3)


def test_llama_cpp_loads_the_export_with_its_chat_template(
    base: Base, exports: dict[str, Path]
) -> None:
    for path in exports.values():
        model = NativeModel(path)
        try:
            assert model.chat_template() == base.tokenizer.chat_template
            assert model.n_vocab == len(base.tokenizer)
            assert (model.bos_token, model.eos_token) == ("<|im_start|>", "<|im_end|>")
        finally:
            model.free()


@pytest.mark.parametrize("quantization", ["f16", "q8_0"])
def test_a_faithful_export_passes_the_gate(
    base: Base, exports: dict[str, Path], quantization: Quantization
) -> None:
    report = check_parity(base.model, base.tokenizer, exports[quantization], CONVERSATIONS)
    assert report.passed, report.failures
    assert report.token_agreement >= 0.9
    assert abs(report.relative_perplexity_change) <= 0.05
    if quantization == "f16":  # f16 rounding only: (nearly) the transformers model itself
        assert abs(report.relative_perplexity_change) < 0.01
    assert 1 < report.perplexity_transformers < 100


def test_the_gate_refuses_a_different_chat_template(base: Base, tmp_path: Path) -> None:
    template = base.tokenizer.chat_template.replace("named SmolLM", "named Forgeline")
    report = broken_export(base, tmp_path, {Keys.Tokenizer.CHAT_TEMPLATE: template})
    message = failure(report, "prompt tokens")
    assert "' For' (GGUF) against 3511 ' Sm' (transformers)" in message


def test_the_gate_refuses_a_missing_chat_template(base: Base, tmp_path: Path) -> None:
    report = broken_export(base, tmp_path, {Keys.Tokenizer.CHAT_TEMPLATE: None})
    assert "no tokenizer.chat_template" in failure(report, "chat template")


def test_the_gate_refuses_a_template_that_doubles_the_bos(base: Base, tmp_path: Path) -> None:
    # SmolLM2's BOS is <|im_start|>, which its template already opens with.
    template = "{{ bos_token }}" + base.tokenizer.chat_template
    report = broken_export(base, tmp_path, {Keys.Tokenizer.CHAT_TEMPLATE: template})
    assert "doubled BOS" in failure(report, "prompt tokens")


def test_the_gate_refuses_an_add_bos_flag_that_doubles_the_bos(base: Base, tmp_path: Path) -> None:
    report = broken_export(base, tmp_path, {Keys.Tokenizer.ADD_BOS: True})
    message = failure(report, "special tokens")
    assert "at token 1: 1 '<|im_start|>' (GGUF)" in message and "doubled BOS" in message


def test_the_gate_refuses_a_wrong_eos_id(base: Base, tmp_path: Path) -> None:
    report = broken_export(base, tmp_path, {Keys.Tokenizer.EOS_ID: 0})
    message = failure(report, "EOS token")
    assert "EOS id 0 '<|endoftext|>'" in message and "2 '<|im_end|>'" in message


def test_the_gate_refuses_q_weights_left_in_transformers_order(
    base: Base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    permute = export.llama_cpp_rope_order
    n_head = base.model.config.num_attention_heads  # 9; k projections are permuted with 3

    def q_unpermuted(weight: npt.NDArray[Any], heads: int) -> npt.NDArray[Any]:
        return weight if heads == n_head else permute(weight, heads)

    monkeypatch.setattr(export, "llama_cpp_rope_order", q_unpermuted)
    report = broken_export(base, tmp_path)
    assert report.relative_perplexity_change > 10  # perplexity blows up
    assert "perplexity: the GGUF's perplexity" in failure(report, "perplexity")
    assert "below the required 90.0%" in failure(report, "token agreement")


def test_rows_that_are_not_whole_q8_0_blocks_stay_f16() -> None:
    rows = np.ones((4, 48), dtype=np.float32)  # 48 is not a multiple of Q8_0's 32
    data, kind = export._encode(rows, "q8_0")
    assert kind == GGMLQuantizationType.F16 and data.dtype == np.float16
    assert export._encode(np.ones((4, 64), dtype=np.float32), "q8_0")[1] == (
        GGMLQuantizationType.Q8_0
    )
    assert export._encode(np.ones(64, dtype=np.float32), "q8_0")[1] == GGMLQuantizationType.F32
