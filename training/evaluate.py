"""Test-set evaluation of a jmp_calc model: MAE / RMSE per target and a parity plot.

    python -m training.evaluate DIR/model TEST.extxyz [--format F] [--head NAME] [--out DIR] [--batch-size B]

Prints one line per target (energy in eV and eV/atom, forces in eV/A per component, stress in eV/A^3, scalar
properties in their own units), writes ``OUT/test_metrics.json`` and ``OUT/parity.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ase.stress import voigt_6_to_full_3x3_stress

from .config import ConfigError
from .data.base import DataError

__all__ = ["evaluate_model", "main"]


def _stats(pred: np.ndarray, true: np.ndarray) -> dict:
    err = np.asarray(pred, np.float64).reshape(-1) - np.asarray(true, np.float64).reshape(-1)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "n": int(err.size)}


def evaluate_model(model_dir, samples, *, out: Path | None = None, head: str | None = None, batch_size: int = 16,
                   device: str = "auto", dtype: str = "float32", targets: tuple[str, ...] | None = None) -> dict:
    """Predict every sample with every target the model's card lists (or ``targets``: what one dataset of a
    multi-dataset run trained); returns {target: {mae, rmse, n}}.
    ``model_dir``: anything :func:`jmp_calc.io.load_model` accepts, or a :class:`JMPModel` (its ``card``)."""
    from jmp_calc.io import load_model
    from jmp_calc.model import JMPModel
    from jmp_calc.potential import Potential

    model = load_model(model_dir if isinstance(model_dir, JMPModel) else str(model_dir))
    card = model.card
    targets = list(targets or card.targets or ["energy", "forces"])
    structures = [s.to_atoms() for s in samples]
    pairs: dict[str, tuple[list, list]] = {}
    energy_head = head or card.default_head or model.head_names[0]
    if "energy" in targets:
        props = ["energy"] + [p for p in ("forces", "stress") if p in targets]
        # an energy-only head has no force output to pick: "auto" would read the card's force kind
        forces = "auto" if ("forces" in targets or "stress" in targets) else "conservative"
        pot = Potential(model, head=energy_head, forces=forces, device=device, dtype=dtype)
        preds = pot.predict_many(structures, batch_size=batch_size, properties=tuple(props), progress=False)
        for s, p in zip(samples, preds):
            n = len(s)
            if s.energy is not None:
                pairs.setdefault("energy", ([], []))[0].append(p["energy"])
                pairs["energy"][1].append(s.energy)
                pairs.setdefault("energy_per_atom", ([], []))[0].append(p["energy"] / n)
                pairs["energy_per_atom"][1].append(s.energy / n)
            if "forces" in p and s.forces is not None:
                pairs.setdefault("forces", ([], []))[0].append(np.asarray(p["forces"]).reshape(-1))
                pairs["forces"][1].append(s.forces.reshape(-1))
            if "stress" in p and s.stress is not None:
                st = np.asarray(p["stress"])
                st = st if st.shape == (3, 3) else voigt_6_to_full_3x3_stress(st.reshape(-1))
                pairs.setdefault("stress", ([], []))[0].append(st.reshape(-1))
                pairs["stress"][1].append(s.stress.reshape(-1))
    for prop in [t for t in targets if t not in ("energy", "forces", "stress")]:
        pot = Potential(model, head=prop, forces="conservative", device=device, dtype=dtype)
        preds = pot.predict_many(structures, batch_size=batch_size, properties=("energy",), progress=False)
        for s, p in zip(samples, preds):
            if prop in s.properties:
                pairs.setdefault(prop, ([], []))[0].append(p["energy"])
                pairs[prop][1].append(s.properties[prop])
    if not pairs:
        raise DataError("no test structure carries any of the model's targets " + ", ".join(targets))
    flat = {k: (np.concatenate([np.atleast_1d(x) for x in a]), np.concatenate([np.atleast_1d(x) for x in b]))
            for k, (a, b) in pairs.items()}
    report = {k: _stats(*v) for k, v in flat.items()}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "test_metrics.json").write_text(json.dumps(report, indent=1) + "\n")
        _parity(flat, out / "parity.png", title=str(card.name or model_dir))
    return report


def _parity(flat: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in flat if k != "energy"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.8 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pred, true = flat[k]
        ax.scatter(true, pred, s=4, alpha=0.5)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = np.mean(np.abs(pred - true))
        ax.set_title(f"{k}: MAE {mae:.3g}", fontsize=9)
        ax.set_xlabel("reference")
        ax.set_ylabel("predicted")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def default_out(model: str) -> Path:
    """Where the report goes without ``--out``: ``DIR/test`` for ``DIR/model`` of a run; ``./eval-NAME`` for a
    registry name or a model shipped inside the installed package (never written into)."""
    from jmp_calc.io import EMBEDDED_DIR

    path = Path(model)
    if not path.is_dir() or EMBEDDED_DIR in path.resolve().parents:
        return Path(f"eval-{path.name}")
    return path.parent / "test"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="jmp_calc model directory (e.g. DIR/model of a fine-tuning run)")
    ap.add_argument("test", help="test structures")
    ap.add_argument("--format")
    ap.add_argument("--head")
    ap.add_argument("--out", help="where test_metrics.json and parity.png go (default: DIR/test for a run's DIR/model; "
                    "./eval-NAME for a registry name or a model shipped in the package)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-abs-force", type=float, default=None, metavar="EV_PER_A",
                    help="leave out structures whose largest per-atom force norm exceeds this (as a dataset's "
                         "max_abs_force drops them from training), and say how many")
    args = ap.parse_args(argv)
    from jmp_calc.io import CheckpointError

    from .data import read_dataset
    from .data.base import drop_large_forces

    try:
        samples = read_dataset(args.test, format=args.format)
        if args.max_abs_force is not None:
            n = len(samples)
            samples, dropped = drop_large_forces(samples, args.max_abs_force)
            print(f"max_abs_force {args.max_abs_force:g} eV/A: {len(dropped)} of {n} structures left out")
        out = Path(args.out) if args.out else default_out(args.model)
        report = evaluate_model(args.model, samples, out=out, head=args.head, batch_size=args.batch_size,
                                device=args.device)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'target':18s} {'MAE':>12s} {'RMSE':>12s} {'n':>8s}")
    for k, v in report.items():
        print(f"{k:18s} {v['mae']:12.5g} {v['rmse']:12.5g} {v['n']:8d}")
    print(f"wrote {out / 'test_metrics.json'} and {out / 'parity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
