"""Corpus filters of the mini-JMP pre-training data: unphysical forces, downstream benchmark molecules and their
close analogues, QM9 test-split molecules (JMP's rule: pre-train on molecules and catalysis, never on what is
evaluated).

* ``max_force(frame)``: the largest per-atom force norm (eV/A) of a labelled frame; frames above ``FMAX`` (20 eV/A) are
  dropped (steep compressed-bond / atom-clash geometries, or a bad SCF, not chemistry).
* ``BenchmarkFilter``: Morgan fingerprints (radius 2, 2048 bits, rdkit; heavy-atom graph, no chirality) of the ten rMD17
  molecules and the MD22 systems (their covalent components: the nucleobases of the DNA base-pair stacks, C60 of the
  buckyball catcher); a molecule whose Tanimoto similarity to any of them is >= 0.5 is a benchmark analogue.
  Identical molecules have similarity 1, so the benchmark molecules themselves are always rejected.
* ``qm9_test_smiles()``: canonical SMILES of the QM9 test-split molecules (data/mini/qm9_split.json), so a molecule
  from another source that happens to be a QM9 test molecule is rejected too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .mini_md22 import MOLECULES as MD22_GENERATED
from .mini_rmd17 import MOLECULES as RMD17_GENERATED

FMAX = 20.0  #: eV/A, the largest force a pre-training frame may hold
TANIMOTO_MAX = 0.5  #: a molecule with similarity >= this to a benchmark molecule is excluded

#: the ten rMD17 molecules (the generator's eight plus the two it does not make)
RMD17 = {**RMD17_GENERATED, "azobenzene": "c1ccc(cc1)N=Nc1ccccc1", "paracetamol": "CC(=O)Nc1ccc(O)cc1"}
#: the seven MD22 systems; non-covalent complexes as their covalent components. The buckyball catcher's C60H28
#: host and the double-walled nanotube have no SMILES of a size this corpus draws from (pure sp2 carbon cages
#: and tubes; the corpus has at most 20 heavy atoms) and are represented by C60.
MD22 = {
    **MD22_GENERATED,
    "stachyose": "OCC1OC(OCC2OC(OCC3OC(OC4(CO)OC(CO)C(O)C4O)C(O)C(O)C3O)C(O)C(O)C2O)C(O)C(O)C1O",
    "adenine": "Nc1ncnc2[nH]cnc12",
    "thymine": "Cc1c[nH]c(=O)[nH]c1=O",
    "cytosine": "Nc1cc[nH]c(=O)n1",
    "guanine": "Nc1nc2[nH]cnc2c(=O)[nH]1",
    "C60": "c12c3c4c5c1c1c6c7c2c2c8c3c3c9c4c4c%10c5c5c1c1c6c6c%11c7c2c2c7c8c3c3c8c9c4c4c9c%10c5c5c1c1c6c6c%11c2c2"
           "c7c3c3c8c4c4c9c5c1c1c6c2c3c41",
}
BENCHMARKS = {**{f"rmd17:{k}": v for k, v in RMD17.items()}, **{f"md22:{k}": v for k, v in MD22.items()}}


class FilterError(ValueError):
    """A molecule or frame the filters cannot judge (unparsable SMILES, unlabelled frame)."""


def max_force(frame) -> float:
    """Largest per-atom force norm of a labelled frame (eV/A; constraints not applied)."""
    try:
        forces = np.asarray(frame.get_forces(apply_constraint=False), dtype=float)
    except Exception as exc:  # noqa: BLE001 - no calculator / no forces
        raise FilterError(f"frame has no forces: {exc}") from None
    if forces.size == 0:
        return 0.0
    norms = np.linalg.norm(forces, axis=1)
    return float(norms.max()) if np.all(np.isfinite(norms)) else float("inf")


def force_ok(frame, fmax: float = FMAX) -> bool:
    """True when every atom's force is at most ``fmax`` and energy and forces are finite."""
    try:
        energy = float(frame.get_potential_energy())
    except Exception as exc:  # noqa: BLE001
        raise FilterError(f"frame has no energy: {exc}") from None
    return bool(np.isfinite(energy)) and max_force(frame) <= fmax


def mol_from_smiles(smiles: str):
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(str(smiles).replace("\\\\", "\\"))  # extxyz-escaped stereo bonds (common.extxyz_safe)
    if mol is None:
        raise FilterError(f"rdkit cannot parse SMILES {smiles!r}")
    return mol


def canonical_smiles(smiles: str) -> str:
    from rdkit import Chem

    return Chem.MolToSmiles(mol_from_smiles(smiles))


def fingerprint(smiles: str):
    """Morgan fingerprint (radius 2, 2048 bits) of a SMILES."""
    return _generator().GetFingerprint(mol_from_smiles(smiles))


@lru_cache(maxsize=1)
def _generator():
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


@dataclass
class BenchmarkFilter:
    """Tanimoto filter against the downstream benchmark molecules (``BENCHMARKS`` unless given)."""

    references: dict[str, str] = field(default_factory=lambda: dict(BENCHMARKS))
    threshold: float = TANIMOTO_MAX

    def __post_init__(self):
        self._names = list(self.references)
        self._fps = [fingerprint(s) for s in self.references.values()]

    def nearest(self, smiles: str) -> tuple[str, float]:
        """(benchmark name, Tanimoto similarity) of the most similar benchmark molecule."""
        from rdkit import DataStructs

        sims = DataStructs.BulkTanimotoSimilarity(fingerprint(smiles), self._fps)
        k = int(np.argmax(sims))
        return self._names[k], float(sims[k])

    def is_analogue(self, smiles: str) -> bool:
        return self.nearest(smiles)[1] >= self.threshold


@lru_cache(maxsize=2)
def qm9_test_smiles(split_file: str | None = None) -> frozenset[str]:
    """Canonical SMILES of the QM9 test-split molecules (split from ``split_file`` or recomputed, seed 0)."""
    import json
    from pathlib import Path

    from .qm9_split import load_qm9, make_split

    df = load_qm9(("Index", "SMILES"))
    if split_file is not None and Path(split_file).exists():
        test = json.loads(Path(split_file).read_text())["test"]
    else:
        test = make_split(df["Index"].to_numpy(), 0)["test"]
    rows = df.set_index("Index").loc[test, "SMILES"]
    out = set()
    for s in rows:
        try:
            out.add(canonical_smiles(s))
        except FilterError:
            pass
    return frozenset(out)
