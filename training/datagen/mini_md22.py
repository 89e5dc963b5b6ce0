"""mini-md22 (MD22 role, downstream): GFN2-xTB Langevin MD of two MD22 molecules.

    python -m training.datagen.mini_md22 --out data/mini/mini_md22 --seed 0

Ac-Ala3-NHMe (42 atoms) and docosahexaenoic acid (DHA, 56 atoms): rdkit ETKDG geometry, GFN2-xTB pre-relaxation,
Langevin MD at 500 K with a 1 fs step (friction 0.02 / fs), ``--equil`` steps discarded, a frame every ``--stride``
steps; trajectory A gives ``--n-train`` + ``--n-val`` frames (random val draw), an independent trajectory B
``--n-test`` test frames (see molecular_md.py). Sizes are much smaller than MD22 (xTB costs ~0.08 / 0.13 s per
step for these molecules on one core). Energies eV, forces eV/A (JMP trains MD22 on forces).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import command_line, run_chunked
from .molecular_md import md_units, molecule_md_frames

DATASET = "mini-md22"
METHOD = "GFN2-xTB (tblite 0.8 via tblite.ase.TBLite), Langevin MD"
MOLECULES = {
    "Ac-Ala3-NHMe": "CC(=O)NC(C)C(=O)NC(C)C(=O)NC(C)C(=O)NC",
    "DHA": "CC/C=C\\C/C=C\\C/C=C\\C/C=C\\C/C=C\\C/C=C\\CCC(=O)O",
}


def generate(out: Path, seed: int = 0, n_train: int = 250, n_val: int = 50, n_test: int = 100, stride: int = 5,
             equil: int = 200, timestep_fs: float = 1.0, temperature_K: float = 500.0, molecules=None,
             prerelax_steps: int = 300, stop_after_chunks=None, progress: bool = True):
    units = md_units(MOLECULES, molecules)

    def make(unit):
        return molecule_md_frames(unit["name"], unit["smiles"], unit["id"], seed, temperature_K=temperature_K,
                                  timestep_fs=timestep_fs, equil=equil, stride=stride, n_trainval=n_train + n_val,
                                  n_val=n_val, n_test=n_test, prerelax_steps=prerelax_steps)

    params = {"seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test, "stride": stride, "equil": equil,
              "timestep_fs": timestep_fs, "temperature_K": temperature_K, "molecules": [u["name"] for u in units],
              "prerelax_steps": prerelax_steps,
              "version": 1}
    return run_chunked(out, dataset=DATASET, units=units, make_frames=make, chunk_size=1, params=params, method=METHOD,
                       command=command_line("mini_md22", out, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test,
                                            stride=stride, equil=equil),
                       desc="mini-md22 xTB MD (molecules)", stop_after_chunks=stop_after_chunks, progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=250)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--stride", type=int, default=5, help="MD steps (1 fs) between saved frames")
    ap.add_argument("--equil", type=int, default=200)
    ap.add_argument("--molecules", nargs="*", default=None, choices=list(MOLECULES))
    args = ap.parse_args(argv)
    return generate(args.out, args.seed, args.n_train, args.n_val, args.n_test, args.stride, args.equil,
                    molecules=args.molecules)


if __name__ == "__main__":
    main()
