"""Federated training on the Taiwan credit default data: the federated issue's quality bar.

``examples/taiwan-federated`` (four silos, one per education level, undocumented codes folded
into "others") is simulated as a user runs it, and then:
- the same federation with differential privacy on (epsilon and the ROC-AUC it costs);
- the same federation on Flower's Ray simulation runtime against the in-process grid
  (wall-clock seconds, the same rounds), with ``--ray``;
- the same federation deployed, ``forgeline federated server`` and one ``client`` process per
  silo on localhost, against a simulation of the same silo files, with ``--deployed``.

Checks (exit 1 when one fails): federated ROC-AUC within 0.01 of pooled; every silo's own model
below the federated one on all test rows; deployed coefficients equal to simulated ones.

    python benchmarks/federated_bench.py [--rounds 20] [--ray] [--deployed]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from forgeline.config import load_project
from forgeline.federated.report import epsilon
from forgeline.federated.server import FederationOutcome
from forgeline.federated.simulation import Simulation, simulate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "taiwan-federated"
TAIWAN = ROOT.parent / "shared" / "data" / "taiwan_credit_default.csv"
FEDERATED_WITHIN = 0.01


def _quiet(_: str) -> None:
    pass


def _project(
    work: Path, name: str, extra: str = "", swaps: tuple[tuple[str, str], ...] = ()
) -> Path:
    """The example's config in a folder of its own, with text swapped and ``extra`` appended."""
    folder = work / name
    folder.mkdir()
    (folder / "data").symlink_to(work / "data")
    text = (EXAMPLE / "forgeline.yaml").read_text()
    for old, new in swaps:
        if old not in text:
            raise SystemExit(f"{EXAMPLE / 'forgeline.yaml'}: expected {old!r}")
        text = text.replace(old, new)
    (folder / "forgeline.yaml").write_text(text + extra)
    return folder / "forgeline.yaml"


def _run(config: Path, rounds: int) -> tuple[Simulation, float]:
    started = time.perf_counter()
    result = simulate(load_project(config), _quiet, rounds)
    return result, time.perf_counter() - started


def _checks(result: Simulation, label: str) -> list[str]:
    """Print the comparison and the bar's two checks; the failed ones."""
    comparison = result.comparison
    print(comparison.table.round(4).to_string(na_rep="-"))
    federated, pooled = comparison.auc("federated"), comparison.auc("pooled")
    gap = federated - pooled
    within = abs(gap) <= FEDERATED_WITHIN
    print(
        f"{'PASS' if within else 'FAIL'} federated ROC-AUC {federated:.4f} vs pooled "
        f"{pooled:.4f} ({gap:+.4f}, bar within {FEDERATED_WITHIN})"
    )
    better = [r for r in comparison.silo_alone_rows if comparison.auc(r) >= federated]
    listed = ", ".join(f"{r} {comparison.auc(r):.4f}" for r in better)
    print(
        f"{'FAIL' if better else 'PASS'} every silo's own model below the federated one on all "
        "test rows" + (f" (not: {listed})" if better else "")
    )
    return [f"{label}: federated vs pooled"] * (not within) + [
        f"{label}: silo alone below federated"
    ] * bool(better)


def _coefficients(version: Path) -> list[float]:
    weights = json.loads((version / "model.logistic.json").read_text())
    return [*weights["coefficients"], weights["intercept"]]


def _ray_seconds(config: Path, rounds: int) -> float:
    """The same federation on Flower's simulation runtime (Ray), one SuperNode per silo."""
    from flwr.simulation import run_simulation

    from forgeline.federated.client import make_client_app
    from forgeline.federated.registration import plan_for
    from forgeline.federated.silos import federation_config, simulated_silos
    from forgeline.federated.simulation import make_server_app

    project = load_project(config)
    tabular, federated = federation_config(project)
    federated = federated.model_copy(update={"rounds": rounds})
    silos, _ = simulated_silos(project)
    client_app = make_client_app(
        lambda context: (silos[int(context.node_config["partition-id"])], tabular.data)
    )
    outcomes: list[FederationOutcome] = []
    server_app = make_server_app(plan_for(project, federated), _quiet, outcomes)
    started = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=len(silos),
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    if not outcomes:
        raise SystemExit("the Ray simulation ended without a result")
    return time.perf_counter() - started


def _write_silo_files(work: Path) -> dict[str, str]:
    frame = pd.read_csv(work / "data" / "credit.csv")
    files = {}
    for level, rows in frame.groupby("X3"):
        path = work / "data" / f"education-{level}.csv"
        rows.to_csv(path, index=False)
        files[f"education-{level}"] = f"data/{path.name}"
    return files


def _deployed(config: Path, silos: list[str]) -> subprocess.CompletedProcess[str]:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    forgeline = [sys.executable, "-m", "forgeline", "federated"]
    coordinator = subprocess.Popen(
        [*forgeline, "server", "--port", str(port), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    clients = [
        subprocess.Popen(
            [
                *forgeline,
                "client",
                "--silo",
                silo,
                "--server",
                f"127.0.0.1:{port}",
                "--config",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        for silo in silos
    ]
    try:
        output, _ = coordinator.communicate(timeout=3600)
    finally:
        for client in clients:
            os.killpg(client.pid, signal.SIGTERM)
    return subprocess.CompletedProcess(coordinator.args, coordinator.returncode, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ray", action="store_true", help="also time Flower's Ray runtime")
    parser.add_argument("--deployed", action="store_true", help="also run server + clients")
    parser.add_argument("--dp-runs", type=int, default=3, help="runs with differential privacy")
    args = parser.parse_args()
    if not TAIWAN.is_file():
        raise SystemExit(f"{TAIWAN} is absent")
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "data").mkdir()
        prepare = [
            sys.executable,
            str(EXAMPLE / "prepare_credit.py"),
            str(TAIWAN),
            str(work / "data"),
        ]
        subprocess.run(prepare, check=True, stdout=subprocess.DEVNULL)

        print(f"examples/taiwan-federated, {args.rounds} rounds at most, in-process grid")
        plain, seconds = _run(_project(work, "logistic"), args.rounds)
        print(f"\nlogistic regression, fedavg ({seconds:.1f} s)")
        failures += _checks(plain, "logistic")
        trees = (("kind: logistic ", "kind: lightgbm #"), ("strategy: fedavg", "strategy: cyclic"))
        boosted, seconds = _run(_project(work, "lightgbm", swaps=trees), args.rounds)
        print(f"\nLightGBM, cyclic ({seconds:.1f} s, {len(boosted.outcome.rounds)} cycles)")
        failures += _checks(boosted, "lightgbm")

        dp = "  privacy:\n    dp: {noise_multiplier: 1.0, clipping_norm: 1.0, delta: 1.0e-5}\n"
        federated = plain.comparison.auc("federated")
        runs = [
            _run(_project(work, f"dp-{i}", extra=dp), args.rounds)[0] for i in range(args.dp_runs)
        ]
        aucs = [run.comparison.auc("federated") for run in runs]
        print(
            f"\nlogistic regression with DP (noise multiplier 1.0, clipping norm 1.0), "
            f"{args.dp_runs} runs (the noise differs each run): epsilon "
            f"{epsilon(runs[0].outcome):.3g} at delta 1e-05, ROC-AUC "
            f"{', '.join(f'{a:.4f}' for a in aucs)}, mean {sum(aucs) / len(aucs):.4f} "
            f"({sum(aucs) / len(aucs) - federated:+.4f} against no DP)"
        )

        if args.ray:
            in_process = _run(_project(work, "timed"), 5)[1]
            on_ray = _ray_seconds(_project(work, "ray"), 5)
            print(
                f"\n5 rounds: in-process grid {in_process:.1f} s, Flower's Ray runtime "
                f"{on_ray:.1f} s (Ray / in-process = {on_ray / in_process:.2f}x)"
            )

        if args.deployed:
            failures += _deployed_check(work, args.rounds)
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)}")


def _deployed_check(work: Path, rounds: int) -> list[str]:
    """Server + one client process per silo file against a simulation of the same files."""
    files = _write_silo_files(work)
    silos = "silos: {" + ", ".join(f"{k}: {v}" for k, v in files.items()) + "}  #"
    swap = (("split_by: X3 ", silos),)
    simulated, _ = _run(_project(work, "files-simulated", swaps=swap), rounds)
    config = _project(work, "files-deployed", swaps=swap)
    started = time.perf_counter()
    result = _deployed(config, list(files))
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout)
        return ["deployed run"]
    version = config.parent / "models" / "taiwan-federated" / "v1"
    here, there = _coefficients(version), _coefficients(simulated.version.path)
    diff = max(abs(a - b) for a, b in zip(here, there, strict=True))
    verdict = "PASS" if diff < 1e-9 else "FAIL"
    print(
        f"\n{verdict} deployed (server + {len(files)} client processes, {seconds:.0f} s) equals "
        f"simulated: largest coefficient difference {diff:.2e}"
    )
    return [] if verdict == "PASS" else ["deployed equals simulated"]


if __name__ == "__main__":
    main()
