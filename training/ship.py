"""Make a training run's model shippable: merge model-card fields, measure every head on its test set, write.

    python -m training.ship SRC DEST --card CARD.yaml [--test HEAD=FILE ...]

``SRC``: a model directory (e.g. ``runs/jmp-mini-general/model``). ``CARD.yaml``: fields merged over SRC's card
(``name``, ``task``, ``level_of_theory``, ``head_rules``, ``targets``, ``pretraining: false``, ...; a ``readme``
key holds the README text, with ``{test_table}`` replaced by the measured metrics). Each ``--test HEAD=FILE`` is
evaluated with ``training.evaluate`` (energy, forces and stress where the card's targets and the file have them);
the metrics go into the card's ``test_metrics`` under the head's name, the parity plot and metrics to
``SRC/../test-HEAD/``. DEST is written in one step (a failure leaves nothing half-written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jmp_calc.errors import ModelCardError

from .config import ConfigError
from .data.base import DataError

UNITS = {"energy": "eV", "energy_per_atom": "eV/atom", "forces": "eV/A", "stress": "eV/A^3"}


def ship(src: str, dest: str, card_fields: dict, tests: dict[str, str]) -> dict:
    from jmp_calc.io import load_model, save_model
    from jmp_calc.model import JMPModel

    from .data import read_dataset
    from .evaluate import evaluate_model

    model = load_model(src)
    unknown = sorted(set(tests) - set(model.head_names))
    if unknown:
        raise ConfigError(f"--test names head(s) {unknown}; {src} has heads {model.head_names}")
    card_fields = dict(card_fields)
    readme = card_fields.pop("readme", None)
    card = model.card.replace(**card_fields)  # validated: an unknown or ill-typed field is a ModelCardError
    card.check_heads(model.head_names, where=f"--card fields for {src}")
    shipped = JMPModel(model.config, model.heads, card=card)  # evaluation reads the targets from the merged card
    shipped.load_state_dict(model.state_dict())
    model = shipped.eval()
    metrics = {}
    for head, path in tests.items():
        samples = read_dataset(path)
        metrics[head] = evaluate_model(model, samples, out=Path(src).parent / f"test-{head}", head=head)
        metrics[head]["n_structures"] = len(samples)
        metrics[head]["file"] = str(path)
        print(f"{head}: " + ", ".join(f"{k} MAE {v['mae']:.4g} {UNITS.get(k, '')}" for k, v in metrics[head].items()
                                     if isinstance(v, dict)) + f" ({len(samples)} structures)", flush=True)
    if metrics:
        card = card.replace(test_metrics=metrics)
    if readme is not None:
        readme = readme.replace("{test_table}", test_table(metrics))
    save_model(model, dest, card=card, readme=readme, overwrite=True)
    print(f"wrote {dest}")
    return card.to_dict()


def test_table(metrics: dict) -> str:
    rows = ["| head | test set | structures | energy MAE (meV/atom) | force MAE (meV/A) | stress MAE (meV/A^3) |",
            "|---|---|---|---|---|---|"]
    for head, m in metrics.items():
        def f(k, m=m):
            return f"{m[k]['mae'] * 1000:.1f}" if k in m else "-"
        rows.append(f"| {head} | `{m['file']}` | {m['n_structures']} | {f('energy_per_atom')} | {f('forces')} | "
                    f"{f('stress')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--card", required=True, help="YAML file of model-card fields")
    ap.add_argument("--test", action="append", default=[], metavar="HEAD=FILE")
    args = ap.parse_args(argv)
    import yaml

    try:
        path = Path(args.card)
        if not path.is_file():
            raise ConfigError(f"--card {path}: no such file")
        fields = yaml.safe_load(path.read_text()) or {}
        if not isinstance(fields, dict):
            raise ConfigError(f"--card {path}: expected a mapping of card fields")
        tests = {}
        for t in args.test:
            head, sep, file = t.partition("=")
            if not sep or not file:
                raise ConfigError(f"--test {t!r}: expected HEAD=FILE")
            if not Path(file).exists():
                raise ConfigError(f"--test {t!r}: no such file {file}")
            tests[head] = file
        ship(args.src, args.dest, fields, tests)
    except (ConfigError, DataError, ModelCardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
