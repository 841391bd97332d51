"""``MODEL_CARD.md``: what a model is, what it was trained on, and how well it did."""

from __future__ import annotations

from typing import Any


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _redaction_line(redaction: dict[str, Any] | None) -> list[str]:
    """What ``data.redact`` replaced before training, if it was on."""
    if redaction is None:
        return []
    found = ", ".join(f"{entity} {count}" for entity, count in redaction["entities"].items())
    return [
        f"- **Personal data**: replaced in the training, validation and test texts before "
        f"training (data.redact, operator {redaction['operator']}): {found or 'none found'}"
    ]


def _federation_lines(federation: dict[str, Any] | None) -> list[str]:
    """How ``forgeline federated`` trained the model, if it did."""
    if federation is None:
        return []
    silos = ", ".join(f"{name} ({rows} rows)" for name, rows in federation["silos"].items())
    refused = federation.get("refused") or []
    return [
        f"- **Federated training**: {federation['strategy']}, {federation['rounds']} rounds of "
        f"{federation['local_epochs']} local epoch(s) across silos {silos}; the rows stayed in "
        "their silos" + (f"; refused: {', '.join(refused)}" if refused else ""),
        *_privacy_line(federation.get("dp")),
    ]


def _privacy_line(dp: dict[str, Any] | None) -> list[str]:
    if dp is None or dp.get("epsilon") is None:
        return []
    return [
        f"- **Differential privacy** of the model updates, per silo: epsilon {dp['epsilon']:.3g} "
        f"at delta {dp['delta']:g} (noise multiplier {dp['noise_multiplier']:g}, updates clipped "
        f"to L2 norm {dp['clipping_norm']:g}, RDP accountant). The agreed schema, the "
        "standardisation, the calibration and the threshold are computed from the silos' "
        "aggregates without noise"
    ]


def render_model_card(
    manifest: dict[str, Any],
    metrics: dict[str, Any],
    test_metrics: list[tuple[str, str]] | None = None,
) -> str:
    """The card of a version: from its manifest and training metrics when it is registered;
    ``forgeline evaluate`` writes it again beside its report with ``test_metrics`` (the terminal
    summary's rows) in it, since the registered version itself never changes."""
    labels: list[str] = manifest["labels"]
    shown_labels = ", ".join(labels[:20]) + (
        f", ... ({len(labels)} in all)" if len(labels) > 20 else ""
    )
    scalar_metrics = [(k, v) for k, v in metrics.items() if isinstance(v, int | float | str)]
    lines = [
        f"# {manifest['name']} {manifest['version']}",
        "",
        f"- **Task**: {manifest['task']}",
        f"- **Base model**: {manifest['base_model']}",
        f"- **Created**: {manifest['created_at']}",
        f"- **Labels**: {shown_labels}",
        f"- **Training data fingerprint** (SHA-256): `{manifest['data_fingerprint']['sha256']}`",
        *_redaction_line(manifest["data_fingerprint"].get("redaction")),
        *_federation_lines(manifest["data_fingerprint"].get("federated")),
        "",
        "## Validation metrics (measured during training)",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {_format(value)} |" for name, value in scalar_metrics),
        "",
        *(
            [
                "## Test metrics (`forgeline evaluate`)",
                "",
                "| metric | value |",
                "|---|---|",
                *(f"| {name} | {value} |" for name, value in test_metrics),
                "",
                "The plots and examples behind them are in `report.html` beside this card.",
            ]
            if test_metrics is not None
            else [
                "Test-set metrics and plots are written by `forgeline evaluate` to `evaluation/`."
            ]
        ),
        "",
        "## Intended use and limits",
        "",
        "Trained only on the data fingerprinted above; inputs unlike it (another population,",
        "language or domain) get unreliable predictions. Check the evaluation report's results",
        "per class and per group before relying on rare classes or small groups.",
        "",
        "## Software",
        "",
        *(f"- {package} {version}" for package, version in manifest["packages"].items()),
        "",
    ]
    return "\n".join(lines)
