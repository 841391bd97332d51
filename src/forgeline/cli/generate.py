"""``forgeline chat`` (a terminal conversation) and ``forgeline generate`` (one reply per
prompt), on the project's chat model, with its system prompt and generation defaults.

Both run the same engine as the server, in this process. Replies stream as they are generated;
Ctrl-C stops the reply being written (the conversation goes on), Ctrl-D or /exit ends it.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forgeline.cli.options import ConfigOption, VersionOption
from forgeline.cli.output import console, err_console
from forgeline.config.load import load_project
from forgeline.errors import InputError
from forgeline.privacy.placeholders import Placeholders, Restorer
from forgeline.tasks.base import ChatMessage, Generator
from forgeline.tasks.generation import Finished, GenerationRequest, TextChunk

if TYPE_CHECKING:
    from forgeline.privacy import PiiDetector

HELP = (
    "/reset forgets the conversation, /system TEXT sets the system prompt, /exit (or Ctrl-D) quits"
)


@dataclass(frozen=True)
class _LocalModel:
    generator: Generator
    detector: PiiDetector | None
    """Finds the personal data kept from the model (its version's privacy.redact_inputs)."""

    def close(self) -> None:
        self.generator.close()


def _model(config: Path | None, version: str) -> _LocalModel:
    from forgeline.config.privacy import PrivacyConfig
    from forgeline.registry import ModelRegistry
    from forgeline.tasks.base import generator

    project = load_project(config, check_files=False)
    loaded = ModelRegistry(project.registry_dir).load(project.config.name, version)
    privacy = PrivacyConfig.model_validate(loaded.version.config().get("privacy") or {})
    detector = None
    if privacy.redact_inputs:
        from forgeline.privacy import PiiDetector

        detector = PiiDetector.from_config(privacy, project.registry_dir)
    return _LocalModel(generator(loaded.model), detector)


async def _reply(
    local: _LocalModel,
    messages: list[ChatMessage],
    on_text: Callable[[str], None],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
) -> tuple[Finished, dict[str, str]]:
    """The model's reply to ``messages`` as it prepares them (a knowledge base searches
    first: its reply may be the fallback, said without generating), and what it may cite.
    A model that redacts its inputs sees placeholders; ``on_text`` gets the values back."""
    restorer: Restorer | None = None
    if local.detector is not None:
        placeholders = Placeholders()
        contents = placeholders.hide_texts(
            [message["content"] for message in messages], local.detector.detect
        )
        messages = [
            ChatMessage(role=message["role"], content=content)
            for message, content in zip(messages, contents, strict=True)
        ]
        restorer = placeholders.restorer()
    shown = on_text if restorer is None else _restoring(on_text, restorer)
    try:
        return await _generated(local.generator, messages, shown, max_tokens, temperature, seed)
    finally:
        if restorer is not None and (rest := restorer.flush()):
            on_text(rest)


def _restoring(on_text: Callable[[str], None], restorer: Restorer) -> Callable[[str], None]:
    def show(text: str) -> None:
        if restored := restorer.feed(text):
            on_text(restored)

    return show


async def _generated(
    model: Generator,
    messages: list[ChatMessage],
    on_text: Callable[[str], None],
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
) -> tuple[Finished, dict[str, str]]:
    prepared = model.prepare(messages)
    if prepared.reply is not None:
        on_text(prepared.reply)
        return Finished(0, 0, "stop", None), {}
    engine = model.engine()
    defaults = model.generation
    request = GenerationRequest(
        engine.chat_prompt(prepared.messages),
        max_tokens=max_tokens or defaults.max_tokens,
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=defaults.top_p,
        seed=seed,
        stop=defaults.stop,
    )
    async with engine.submit(request) as stream:
        async for event in stream:
            if isinstance(event, TextChunk):
                on_text(event.text)
            else:
                return event, prepared.citations
    raise RuntimeError("the reply ended without a Finished event")


class _Answer:
    """A reply shown as it streams, and kept for the conversation's history."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def show(self, text: str) -> None:
        self._parts.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    @property
    def text(self) -> str:
        return "".join(self._parts)


def chat(
    config: ConfigOption = None,
    version: VersionOption = "latest",
    temperature: Annotated[
        float | None, typer.Option(min=0, max=2, help="Sampling temperature (0: greedy).")
    ] = None,
) -> None:
    """Talk with the chat model in the terminal; replies stream as they are written.
    Ctrl-C stops a reply; /reset, /system TEXT and /exit (or Ctrl-D) as the banner says."""
    import readline  # noqa: F401  (line editing and history for input())

    model = _model(config, version)
    system = model.generator.system_prompt
    history: list[ChatMessage] = []
    err_console.print(f"[dim]{HELP}[/dim]")
    try:
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                break
            except KeyboardInterrupt:
                print()
                continue
            if not line:
                continue
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                history = []
                err_console.print("[dim](conversation forgotten)[/dim]")
                continue
            if line.startswith("/system"):
                system = line.removeprefix("/system").strip() or None
                history = []
                err_console.print(f"[dim](system prompt {'set' if system else 'removed'})[/dim]")
                continue
            if line.startswith("/"):
                err_console.print(f"[yellow]unknown command[/yellow] {line.split()[0]}; {HELP}")
                continue
            history.append(ChatMessage(role="user", content=line))
            turn = ([ChatMessage(role="system", content=system)] if system else []) + history
            answer = _Answer()
            sys.stdout.write("assistant> ")
            sys.stdout.flush()
            citations: dict[str, str] = {}
            try:
                _, citations = asyncio.run(
                    _reply(model, turn, answer.show, temperature=temperature)
                )
            except KeyboardInterrupt:
                sys.stdout.write(" [stopped]")
            print()
            for number, entry in citations.items():
                err_console.print(f"[dim]  [{number}] {entry}[/dim]", highlight=False)
            history.append(ChatMessage(role="assistant", content=answer.text))
    finally:
        model.close()


def generate(
    prompts: Annotated[list[str] | None, typer.Argument(help="Prompts, one reply each.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Prompts from a .txt (one per line), .jsonl or .csv ('prompt')."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write replies to a .jsonl file.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Reply length at most.")] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0, max=2, help="Sampling temperature (0: greedy).")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Same seed, same reply.")] = None,
    config: ConfigOption = None,
    version: VersionOption = "latest",
) -> None:
    """Generate a reply to each prompt (all at once, by continuous batching)."""
    if bool(prompts) == (file is not None):
        raise InputError("give prompts as arguments or a file with --file (one of the two)")
    if output is not None and output.suffix.lower() != ".jsonl":
        raise InputError(f"--output: write replies to a .jsonl file, not '{output.name}'")
    texts = prompts or _read_prompts(file)  # type: ignore[arg-type]
    model = _model(config, version)
    streaming = len(texts) == 1 and output is None

    def show(text: str) -> None:
        if streaming:
            sys.stdout.write(text)
            sys.stdout.flush()

    async def everything() -> list[tuple[str, Finished, dict[str, str]]]:
        async def one(text: str) -> tuple[str, Finished, dict[str, str]]:
            parts: list[str] = []

            def collect(piece: str) -> None:
                parts.append(piece)
                show(piece)

            finished, citations = await _reply(
                model,
                [ChatMessage(role="user", content=text)],
                collect,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
            )
            return "".join(parts), finished, citations

        return list(await asyncio.gather(*(one(text) for text in texts)))

    try:
        replies = asyncio.run(everything())
    finally:
        model.close()
    if streaming:
        print()
        for number, entry in replies[0][2].items():
            console.print(f"  [{number}] {entry}", markup=False, highlight=False)
    elif output is not None:
        with output.open("w", encoding="utf-8") as out:
            for prompt, (reply, finished, citations) in zip(texts, replies, strict=True):
                record = {
                    "prompt": prompt,
                    "reply": reply,
                    "finish_reason": finished.finish_reason,
                    "prompt_tokens": finished.prompt_tokens,
                    "completion_tokens": finished.completion_tokens,
                    "citations": citations,
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        console.print(f"Wrote {len(replies)} replies to {output}")
    else:
        for prompt, (reply, _, citations) in zip(texts, replies, strict=True):
            console.print(f"[bold]{prompt}[/bold]", highlight=False, markup=False)
            console.print(f"  → {reply.strip()}", markup=False)
            for number, entry in citations.items():
                console.print(f"    [{number}] {entry}", markup=False, highlight=False)
            console.print()


def _read_prompts(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"--file: no such file '{path}'")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".txt":
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    elif suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise InputError(f'{path}, line {number}: expected {{"prompt": "..."}}')
            prompts.append(record["prompt"])
    elif suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and "prompt" not in rows[0]:
            raise InputError(f"{path}: no 'prompt' column; columns are {', '.join(rows[0])}")
        prompts = [row["prompt"] for row in rows]
    else:
        raise InputError(f"--file: read prompts from .txt, .jsonl or .csv, not '{suffix}'")
    empty = [i for i, prompt in enumerate(prompts, start=1) if not prompt.strip()]
    if empty:
        raise InputError(f"{path}: prompt {empty[0]} is empty")
    if not prompts:
        raise InputError(f"{path}: no prompts")
    return prompts
