"""``forgeline``: init, train, evaluate, predict, serve, and config/model housekeeping.

Every command works through the task registry and the model registry, never on a task type.
User mistakes (:class:`~forgeline.errors.ForgelineError`) print one clear message and exit with
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from forgeline import __version__
from forgeline.cli.audit import audit_app
from forgeline.cli.backup import backup, restore
from forgeline.cli.billing import billing_app, keys_app, usage
from forgeline.cli.federated import federated_app
from forgeline.cli.generate import chat, generate
from forgeline.cli.options import ConfigOption, VersionOption
from forgeline.cli.output import (
    console,
    describe_prediction,
    err_console,
    flat_for_file,
    metric_rows,
    metrics_table,
    notify,
    warn,
)
from forgeline.cli.privacy import redact, unredact
from forgeline.config import PROJECT_CONFIG
from forgeline.config.load import PROJECT_FILE, load_project
from forgeline.config.sections import is_name
from forgeline.errors import ForgelineError, InputError

app = typer.Typer(
    help="Forgeline: fine-tune a pretrained model on your data, evaluate it and serve it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and check forgeline.yaml.", no_args_is_help=True)
models_app = typer.Typer(
    help="List model versions and move the 'latest' pointer.", no_args_is_help=True
)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"forgeline {__version__}")
        raise typer.Exit


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Forgeline: fine-tune a pretrained model on your data, evaluate it and serve it."""


app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(billing_app, name="billing")
app.add_typer(audit_app, name="audit")
app.add_typer(federated_app, name="federated")
app.command()(usage)
app.command()(chat)
app.command()(generate)
app.command()(redact)
app.command()(unredact)
app.command()(backup)
app.command()(restore)


TEMPLATES = tuple(
    sorted(t.name for t in (resources.files("forgeline") / "templates").iterdir() if t.is_dir())
)
"""One project template per task, named as the task."""


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Project (and model) name; also the new directory.")],
    template: Annotated[
        str, typer.Option("--template", "-t", help=f"One of: {', '.join(TEMPLATES)}.")
    ] = "text-classification",
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to create the project (default: ./NAME).")
    ] = None,
) -> None:
    """Create a project with a config and example data to train on."""
    if template not in TEMPLATES:
        raise ForgelineError(
            f"--template: unknown template '{template}'; choose from {', '.join(TEMPLATES)}"
        )
    if not is_name(name):
        raise ForgelineError(
            f"'{name}' is not a valid project name: use lowercase letters, digits, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    target = directory or Path(name)
    if target.exists() and any(target.iterdir()):
        raise ForgelineError(
            f"{target}: directory exists and is not empty; choose another name or --dir"
        )
    source = resources.files("forgeline") / "templates" / template
    with resources.as_file(source) as template_dir:
        shutil.copytree(template_dir, target, dirs_exist_ok=True)
    config_file = target / PROJECT_FILE
    config_file.write_text(
        config_file.read_text(encoding="utf-8").replace("__NAME__", name), encoding="utf-8"
    )
    console.print(f"Created {target}/ from the '{template}' template. Next:")
    console.print(f"  cd {target}\n  forgeline train\n  forgeline evaluate\n  forgeline serve")


@app.command()
def train(config: ConfigOption = None) -> None:
    """Fine-tune the base model on the project's data and register a new model version."""
    from forgeline.registry import ModelRegistry
    from forgeline.tasks import get_task

    project = load_project(config)
    task = get_task(project.config.task)
    data = task.prepare_data(project)
    for warning in data.warnings:
        warn(warning)
    if len(data.train):
        console.print(
            f"Training {project.config.task} '{project.config.name}' on {len(data.train)} "
            f"examples (validation {len(data.validation)}, test {len(data.test)}), "
            f"base model {project.config.base}"
        )
    else:
        console.print(
            f"Registering {project.config.task} '{project.config.name}': base model "
            f"{project.config.base} as it is (no training data)"
        )
    model = task.fit(project, data, notify)
    registry = ModelRegistry(project.registry_dir)
    registry.bind(project.config.name, model)  # a model it generates with must be there
    version = registry.publish(
        project.config.name,
        model,
        config=project.config.model_dump(mode="json"),
        data_fingerprint=data.fingerprint,
        base_model=project.config.base,
    )
    if model.training_metrics:
        console.print(metrics_table("Validation", metric_rows(model.training_metrics, ".4f")))
    console.print(f"Registered {version.name} {version.version} at {version.path}")


@app.command()
def evaluate(config: ConfigOption = None, version: VersionOption = "latest") -> None:
    """Measure a model on the held-out test data; write metrics.json and report.html."""
    from forgeline.evaluate import metrics_json, write_report
    from forgeline.registry import ModelRegistry
    from forgeline.registry.card import render_model_card
    from forgeline.tasks import get_task

    project = load_project(config)
    loaded = ModelRegistry(project.registry_dir).load(project.config.name, version)
    data = get_task(loaded.version.manifest["task"]).prepare_data(project)
    for warning in data.warnings:
        warn(warning)
    if data.fingerprint["sha256"] != loaded.version.manifest["data_fingerprint"]["sha256"]:
        warn(
            "the data changed since this model was trained; the test split may differ from "
            "the one held out in training"
        )
    evaluation = loaded.model.evaluate(data.test)
    for warning in evaluation.warnings:
        warn(warning)
    out = loaded.version.evaluation_dir
    out.mkdir(exist_ok=True)
    (out / "metrics.json").write_text(metrics_json(evaluation.metrics), encoding="utf-8")
    card = render_model_card(
        loaded.version.manifest, loaded.model.training_metrics, evaluation.summary
    )
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    report = out / "report.html"
    write_report(
        evaluation, report, title=f"{loaded.version.name} {loaded.version.version}: test evaluation"
    )
    console.print(
        metrics_table(
            f"Test set ({loaded.version.name} {loaded.version.version})", evaluation.summary
        )
    )
    console.print(f"Wrote {out / 'metrics.json'}, {report} and the model card with test metrics")


@app.command()
def compress(config: ConfigOption = None, version: VersionOption = "latest") -> None:
    """Export to ONNX and quantize to int8, checking parity and accuracy; register the result
    as a new version (roll back with `forgeline models promote`)."""
    from forgeline.registry import ModelRegistry
    from forgeline.tasks import get_task

    project = load_project(config)
    registry = ModelRegistry(project.registry_dir)
    source = registry.load(project.config.name, version)
    data = get_task(source.version.manifest["task"]).prepare_data(project)
    compressed, report = source.model.compress(project, data, notify)
    manifest = source.version.manifest
    published = registry.publish(
        project.config.name,
        compressed,
        config=source.version.config(),
        data_fingerprint=manifest["data_fingerprint"],
        base_model=manifest["base_model"],
        derived_from=source.version.version,
    )
    console.print(metrics_table(f"Compressed {source.version.version}", metric_rows(report, ".4g")))
    console.print(
        f"Registered {published.name} {published.version} (now latest); roll back with "
        f"`forgeline models promote {source.version.version}`"
    )


@app.command()
def predict(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Inputs to predict, e.g. texts.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Predict every row of a CSV/JSONL/Parquet file."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write predictions to a CSV/JSONL file.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print predictions as JSON lines.")
    ] = False,
    config: ConfigOption = None,
    version: VersionOption = "latest",
) -> None:
    """Predict with the latest (or a given) model version."""
    from forgeline.data import read_table, write_table
    from forgeline.data.io import display_path
    from forgeline.registry import ModelRegistry
    from forgeline.tasks.base import predictor

    if bool(inputs) == (file is not None):
        raise InputError("give inputs as arguments or a file with --file (one of the two)")
    if output is not None and not output.parent.is_dir():
        raise InputError(f"--output: no such directory '{output.parent}'")
    project = load_project(config, check_files=False)
    loaded = ModelRegistry(project.registry_dir).load(project.config.name, version)
    model = predictor(loaded.model)
    source = read_table(file).frame if file is not None else None
    if source is not None:
        items = model.inputs_from_table(source, display_path(file) if file else "")
    else:
        items = [model.parse_cli_input(text) for text in inputs or []]
        model.check_inputs(items)
    predictions = model.predict(items)
    if output is not None:
        import pandas as pd

        # Keep the input file's columns (ids and all) so results join back to it.
        given = source if source is not None else pd.DataFrame({"input": items})
        predicted = pd.DataFrame([flat_for_file(p, output.suffix) for p in predictions])
        overlap = set(predicted.columns) & set(given.columns)
        predicted = predicted.rename(columns={c: f"predicted_{c}" for c in overlap})
        write_table(pd.concat([given.reset_index(drop=True), predicted], axis=1), output)
        console.print(f"Wrote {len(predictions)} predictions to {output}")
        return
    for item, prediction in zip(items, predictions, strict=True):
        if as_json:
            sys.stdout.write(json.dumps({"input": item, **prediction}) + "\n")
            continue
        console.print(f"{escape(str(item))}\n  → {describe_prediction(prediction)}")


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: serve.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: serve.port).")
    ] = None,
) -> None:
    """Serve every registered model over HTTP (OpenAPI docs at /docs)."""
    import uvicorn

    from forgeline.registry import ModelRegistry
    from forgeline.serve import create_app
    from forgeline.serve.logs import logging_config
    from forgeline.serve.privacy import ServerPrivacy

    project = load_project(config, check_files=False)
    registry = ModelRegistry(project.registry_dir)
    if not registry.names():
        raise ForgelineError(
            f"no trained models in {project.registry_dir}; run `forgeline train` first"
        )
    settings = project.config.serve
    bind_host = host if host is not None else settings.host
    bind_port = port if port is not None else settings.port
    gateway = None
    if settings.auth:
        from forgeline.db import Database
        from forgeline.serve.gateway import Gateway

        db = Database.open(project.config.database, project.root)
        redis_url = os.environ.get("FORGELINE_REDIS_URL") or project.config.redis.url
        gateway = Gateway(db, project.config.billing, redis_url, settings.failed_auth)
        if not gateway.keys.exist():
            warn("no API keys yet: every /v1 call gets 401 until you run `forgeline keys create`")
    console.print(
        f"Serving {', '.join(registry.names())} on http://{bind_host}:{bind_port} "
        f"(docs: http://{bind_host}:{bind_port}/docs"
        + (", API keys required" if gateway else ", no API keys: serve.auth is off")
        + ")"
    )
    privacy = ServerPrivacy(
        project.config.privacy,
        project.registry_dir,
        project.root,
        redact=settings.redact,
        max_queue=settings.batching.max_queue,
    )
    app_ = create_app(registry, settings, gateway=gateway, privacy=privacy)
    uvicorn.run(app_, host=bind_host, port=bind_port, log_level="info", log_config=logging_config())


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of forgeline.yaml."""
    sys.stdout.write(json.dumps(PROJECT_CONFIG.json_schema(), indent=2) + "\n")


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate forgeline.yaml and its data, as `forgeline train` does before training."""
    from forgeline.tasks import get_task

    project = load_project(config)
    data = get_task(project.config.task).prepare_data(project)
    for warning in data.warnings:
        warn(warning)
    console.print(
        f"{project.config_file}: OK ({project.config.task} '{project.config.name}', "
        f"{len(data.train)} training, {len(data.validation)} validation, {len(data.test)} test rows)"
    )


@models_app.command("list")
def models_list(config: ConfigOption = None) -> None:
    """List registered models and their versions."""
    from forgeline.registry import ModelRegistry

    project = load_project(config, check_files=False)
    registry = ModelRegistry(project.registry_dir)
    table = RichTable("model", "version", "task", "created", "latest")
    for name in registry.names():
        latest = registry.latest(name)
        for version in registry.versions(name):
            manifest = registry.resolve(name, version).manifest
            table.add_row(
                name,
                version,
                manifest["task"],
                manifest["created_at"],
                "*" if version == latest else "",
            )
    console.print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="Version to make 'latest', e.g. v1 (a rollback).")],
    config: ConfigOption = None,
) -> None:
    """Point 'latest' at another version, e.g. to roll back (recorded in the audit log)."""
    from forgeline.cli.audit import promote

    project = load_project(config, check_files=False)
    console.print(f"latest of {project.config.name} is now {promote(project, version)}")


def main() -> None:
    try:
        app()
    except ForgelineError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(2) from None
