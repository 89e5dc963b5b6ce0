"""JMP's 40 downstream tasks as fine-tuning presets: reader, split, targets, pooling, graph settings and
hyper-parameters as the paper's fine-tuning configs used them (JMP-L; batch sizes as there, learning rate 5e-6 for
the released backbones). The user brings the data; ``--data-dir`` holds it in the file layout given by ``files``.

    python -m training.finetune --list-tasks
    python -m training.finetune --task rmd17-aspirin --data-dir DATA --base jmp-s --out runs/aspirin
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .config import DatasetConfig

__all__ = ["TaskPreset", "TASKS", "get_task", "list_tasks"]

QM9_TARGETS = {  # name in qm9pack / our reader -> (unit, uses per-element references)
    "mu": ("D", False), "alpha": ("a0^3", False), "homo": ("eV", False), "lumo": ("eV", False),
    "gap": ("eV", False), "r2": ("a0^2", False), "zpve": ("eV", True), "U0": ("eV", True), "U": ("eV", True),
    "H": ("eV", True), "G": ("eV", True), "Cv": ("cal/mol/K", False),
}
RMD17 = ["aspirin", "azobenzene", "benzene", "ethanol", "malonaldehyde", "naphthalene", "paracetamol",
         "salicylic", "toluene", "uracil"]
MD22 = ["Ac-Ala3-NHMe", "DHA", "stachyose", "AT-AT", "AT-AT-CG-CG", "buckyball-catcher", "double-walled_nanotube"]
SPICE = ["dipeptides", "solvated_amino_acids"]
MATBENCH = {  # task -> (target column, unit)
    "jdft2d": ("exfoliation_en", "meV/atom"), "phonons": ("last phdos peak", "cm^-1"),
    "dielectric": ("n", ""), "log_gvrh": ("log10(G_VRH)", "log10(GPa)"), "log_kvrh": ("log10(K_VRH)", "log10(GPa)"),
    "perovskites": ("e_form", "eV/atom"), "mp_gap": ("gap pbe", "eV"), "mp_e_form": ("e_form", "eV/atom"),
}
JMP_L_LAYERS = {"embedding": 0.3, "blocks": [0.55, 0.40, 0.30, 0.40, 0.55, 0.625]}


@dataclass(frozen=True)
class TaskPreset:
    """One downstream task: the dataset (a :class:`DatasetConfig`, whose ``train`` is relative to ``--data-dir``)
    and the run settings the paper's fine-tuning config used for it."""

    name: str
    family: str
    description: str
    dataset: DatasetConfig
    split: str  #: how train/val/test are made, for people (the dataset's fields do it)
    batch_size: int = 16
    lr: float = 5e-6
    epochs: int = 500
    plateau_patience: int = 3
    early_stopping_patience: int = 50

    def dataset_config(self, data_dir: str | Path, **changes) -> DatasetConfig:
        """The task's dataset with its file under ``data_dir`` (and any field changed)."""
        return dataclasses.replace(self.dataset, train=str(Path(data_dir) / self.dataset.train), **changes)

    def row(self) -> str:
        d = self.dataset
        pool = next(iter(d.properties.values()))["reduction"] if d.properties else d.reduction
        return (f"{self.name:34s} {self.family:9s} {','.join(d.targets):14s} {pool:4s} "
                f"{d.graph['cutoff']:>4.0f} A  {self.description}")


def _preset(name, family, description, fmt, path, targets, *, split, reduction="sum", forces="conservative",
            graph, atom_refs=True, energy_weight=1.0, force_weight=10.0, train_size=None, val_size=None,
            kfold=None, val_fraction=0.05, **run) -> TaskPreset:
    energy = "energy" in targets
    props = [t for t in targets if t not in ("energy", "forces", "stress")]
    ds = DatasetConfig(
        name=name, train=path, format=fmt, graph=dict(graph), set_tags_to="auto", energy=energy,
        forces=forces if "forces" in targets else "none", energy_weight=energy_weight, force_weight=force_weight,
        atom_refs=atom_refs, train_size=train_size, val_size=val_size, kfold=kfold, val_fraction=val_fraction,
        properties={p: {"weight": 1.0, "reduction": reduction, "atom_refs": bool(atom_refs)} for p in props},
        heads={**({"energy": "energy"} if energy else {}), **{p: p for p in props}})
    return TaskPreset(name, family, description, ds, split, **run)


def _tasks() -> dict[str, TaskPreset]:
    t: dict[str, TaskPreset] = {}
    for target, (unit, refs) in QM9_TARGETS.items():
        t[f"qm9-{target}"] = _preset(
            f"qm9-{target}", "qm9", f"QM9 {target} ({unit}), 110k/10k/rest seeded split", "qm9", "qm9",
            (target,), forces="none", graph={"cutoff": 8.0, "max_neighbors": 30}, atom_refs=refs,
            split="110,000 train / 10,000 val (seeded), test = the rest", train_size=110_000, val_size=10_000,
            batch_size=16, epochs=500)
    for mol in RMD17:
        t[f"rmd17-{mol}"] = _preset(
            f"rmd17-{mol}", "rmd17", f"rMD17 {mol}: energy + gradient forces, 950 train / 50 val", "md17",
            f"rmd17/npz_data/rmd17_{mol}.npz", ("energy", "forces"), graph={"cutoff": 7.0, "max_neighbors": 30},
            split="950 train / 50 val (seeded), test = the rest", train_size=950, val_size=50, batch_size=4,
            epochs=100_000, plateau_patience=25, early_stopping_patience=1000, force_weight=100.0)
    for mol in MD22:
        t[f"md22-{mol}"] = _preset(
            f"md22-{mol}", "md22", f"MD22 {mol}: energy + gradient forces", "md17", f"md22/md22_{mol}.npz",
            ("energy", "forces"), graph={"cutoff": 12.0, "max_neighbors": 30},
            split="seeded: 5% of the file as val", batch_size=4, force_weight=100.0)
    for sub in SPICE:
        t[f"spice-{sub}"] = _preset(
            f"spice-{sub}", "spice", f"SPICE {sub}: energy + gradient forces", "spice", f"spice/{sub}.hdf5",
            ("energy", "forces"), graph={"cutoff": 12.0, "max_neighbors": 30}, split="seeded: 5% of the file as val",
            batch_size=1, force_weight=10.0)
    for name, (col, unit) in MATBENCH.items():
        t[f"matbench-{name}"] = _preset(
            f"matbench-{name}", "matbench", f"MatBench {name}: {col} ({unit}); 5 folds (--fold)", "matbench",
            f"matbench/matbench_{name}.json.gz", (col,), reduction="mean", forces="none",
            graph={"cutoff": 12.0, "max_neighbors": 30}, split="MatBench's 5-fold CV (seeded KFold), 10% val",
            kfold=5, val_fraction=0.1, batch_size=16, atom_refs=False)
    t["qmof-bandgap"] = _preset(
        "qmof-bandgap", "qmof", "QMOF PBE band gap (eV)", "qmof", "qmof/qmof.json", ("bandgap",), forces="none",
        graph={"cutoff": 19.0, "max_neighbors": 30}, split="seeded: 5% of the file as val", batch_size=4,
        atom_refs=False)
    return t


TASKS: dict[str, TaskPreset] = _tasks()


def get_task(name: str) -> TaskPreset:
    if name not in TASKS:
        import difflib

        close = difflib.get_close_matches(name, list(TASKS), n=3)
        raise KeyError(f"unknown task {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                       + " (python -m training.finetune --list-tasks)")
    return TASKS[name]


def list_tasks() -> str:
    head = f"{'task':34s} {'family':9s} {'targets':14s} pool cutoff  description"
    return "\n".join([head, "-" * len(head)] + [p.row() for p in TASKS.values()]) + f"\n{len(TASKS)} tasks"
