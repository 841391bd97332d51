"""A fine-tuned transformers model written back to GGUF, in the image of the GGUF it came from.

The base file's metadata is copied whole (hyper-parameters, the tokenizer's vocabulary, merges
and special tokens, the chat template), so llama.cpp tokenizes and prompts the export exactly
as it did the base; only the keys that describe the file itself (its quantization) are set
anew. The weights come from the model's state dict, renamed to llama.cpp's tensor names and
put back into the layout llama.cpp's own converter writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
import numpy.typing as npt
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, Keys, LlamaFileType

Quantization = Literal["f16", "q8_0"]
MetadataValue = str | int | float | bool | None

_FILE_TYPES = {"f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0}
# Keys that describe the base file rather than the model: its weight encoding (set anew for
# the export) and, under these prefixes, the reader's view of the header, shard layout and
# the importance matrix the base was quantized with.
_FILE_KEYS = {Keys.General.ARCHITECTURE, Keys.General.FILE_TYPE, Keys.General.QUANTIZATION_VERSION}
_FILE_PREFIXES = ("GGUF.", "split.", "quantize.")
# Tensors llama.cpp reads that are no weights of the transformers model (llama 3's rope
# scaling factors are computed from the config at conversion time): copied from the base.
_NOT_IN_MODEL = {gguf.MODEL_TENSOR.ROPE_FREQS}
_Q8_0_BLOCK = gguf.GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0][0]


def write_gguf(
    model: Any,
    base_gguf: Path,
    output: Path,
    quantization: Quantization,
    *,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> None:
    """Write ``model`` (a transformers Llama-architecture model, adapters already merged) to
    ``output`` as a GGUF with ``base_gguf``'s metadata and 2-D weights in ``quantization``.

    ``metadata`` sets or replaces keys of the copied metadata (``None`` removes one), e.g. a
    ``general.name`` for the fine-tuned model; values of existing keys keep their GGUF type.
    Raises :class:`ValueError` when the model's weights do not fit the base file's layout.
    """
    reader = GGUFReader(base_gguf)
    architecture = _scalar(reader, Keys.General.ARCHITECTURE)
    if architecture != "llama":
        raise ValueError(
            f"{base_gguf}: exporting '{architecture}' models is not supported (only 'llama')"
        )
    partial = output.with_name(output.name + ".partial")
    writer = GGUFWriter(partial, architecture)
    try:
        for key, (value, vtype, sub_type) in _metadata(reader, metadata or {}).items():
            writer.add_key_value(key, value, vtype, sub_type)
        writer.add_file_type(_FILE_TYPES[quantization])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for name, data, dtype in _tensors(model, reader, quantization):
            writer.add_tensor(name, data, raw_dtype=dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        # Renamed only once complete: a crash mid-write never leaves a plausible-looking file.
        os.replace(partial, output)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)


def llama_cpp_rope_order(weight: npt.NDArray[Any], n_head: int) -> npt.NDArray[Any]:
    """Rows of a q or k projection in the order llama.cpp expects.

    Hugging Face's Llama applies rotary embeddings to the two halves of each head
    (``rotate_half``); llama.cpp rotates adjacent pairs, so its converter interleaves each
    head's two halves (convert_hf_to_gguf.py, ``LlamaModel.permute``) and transformers undoes
    that when it loads a GGUF. Writing back means applying it again; k uses the KV-head count.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _scalar(reader: GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        raise ValueError(f"the base GGUF has no '{key}'")
    return field.contents()


def _metadata(
    reader: GGUFReader, overrides: Mapping[str, MetadataValue]
) -> dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]]:
    """The base file's key/values to copy, as (value, type, array element type) per key."""
    copied: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]] = {}
    for key, field in reader.fields.items():
        if key in _FILE_KEYS or key.startswith(_FILE_PREFIXES):
            continue
        vtype = field.types[0]
        sub_type = None
        if vtype == GGUFValueType.ARRAY:
            if len(field.types) != 2:
                raise ValueError(f"the base GGUF's '{key}' is a nested array, which is not copied")
            sub_type = field.types[1]
            if not field.data:
                continue  # GGUFWriter cannot write an empty array (and skips them itself)
        copied[key] = (field.contents(), vtype, sub_type)
    for key, value in overrides.items():
        if value is None:
            copied.pop(key, None)
        elif key in copied:
            copied[key] = (value, copied[key][1], None)
        else:
            copied[key] = (value, GGUFValueType.get_type(value), None)
    return copied


def _tensors(
    model: Any, reader: GGUFReader, quantization: Quantization
) -> Iterator[tuple[str, npt.NDArray[Any], GGMLQuantizationType]]:
    """(GGUF name, data, encoding) of every tensor the export holds: the model's weights and
    any base tensors that are no weights of the model."""
    base = {tensor.name: tensor for tensor in reader.tensors}
    n_blocks = int(_scalar(reader, "llama.block_count"))
    n_head = int(_scalar(reader, "llama.attention.head_count"))
    kv_field = reader.get_field("llama.attention.head_count_kv")
    n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
    config = model.config
    if (config.num_attention_heads, config.num_key_value_heads) != (n_head, n_head_kv):
        raise ValueError(
            f"the model has {config.num_attention_heads} attention heads "
            f"({config.num_key_value_heads} for keys and values) and the base GGUF "
            f"{n_head} ({n_head_kv}): it is not the model the base file holds"
        )
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    state = model.state_dict()
    written = set()
    for hf_name, tensor in state.items():
        found = names.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is None:
            raise ValueError(
                f"the model's '{hf_name}' has no llama.cpp tensor name (merge LoRA adapters "
                "into the weights before exporting)"
            )
        kind, name = found
        if name not in base:
            if kind == gguf.MODEL_TENSOR.OUTPUT and _tied(state, hf_name):
                # Tied embeddings: llama.cpp reuses token_embd for the output projection when
                # the file has no output.weight, so writing it would only double the size.
                continue
            raise ValueError(f"the model's '{hf_name}' ({name}) is not in the base GGUF")
        data = tensor.detach().to(device="cpu", dtype=torch.float32).numpy()
        if data.shape != tuple(reversed(base[name].shape.tolist())):
            raise ValueError(
                f"the model's '{hf_name}' has shape {tuple(data.shape)}, the base GGUF's {name} "
                f"{tuple(reversed(base[name].shape.tolist()))} (resized embeddings are not "
                "supported: the tokenizer in the metadata would no longer match)"
            )
        if kind == gguf.MODEL_TENSOR.ATTN_Q:
            data = llama_cpp_rope_order(data, n_head)
        elif kind == gguf.MODEL_TENSOR.ATTN_K:
            data = llama_cpp_rope_order(data, n_head_kv)
        yield (name, *_encode(data, quantization))
        written.add(name)
    for name, tensor in base.items():
        if name in written:
            continue
        kind_and_name = names.get_type_and_name(name)
        if kind_and_name is None or kind_and_name[0] not in _NOT_IN_MODEL:
            raise ValueError(f"the model has no weights for the base GGUF's tensor '{name}'")
        yield name, np.asarray(tensor.data), tensor.tensor_type


def _tied(state: Mapping[str, torch.Tensor], output_name: str) -> bool:
    """Whether the output projection is the token embedding matrix (tied embeddings)."""
    output = state[output_name]
    embeddings = [t for key, t in state.items() if key.endswith("embed_tokens.weight")]
    return any(t.data_ptr() == output.data_ptr() or torch.equal(t, output) for t in embeddings)


def _encode(
    data: npt.NDArray[np.float32], quantization: Quantization
) -> tuple[npt.NDArray[Any], GGMLQuantizationType]:
    """The tensor as it is stored: 1-D tensors (norms) in float32, as llama.cpp's converter
    keeps them (tiny, and rounding them shifts every activation); 2-D weights in
    ``quantization``, falling back to f16 where rows are not whole Q8_0 blocks."""
    if data.ndim == 1:
        return data, GGMLQuantizationType.F32
    if quantization == "q8_0" and data.shape[-1] % _Q8_0_BLOCK == 0:
        kind = GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, kind), kind
    return data.astype(np.float16), GGMLQuantizationType.F16
