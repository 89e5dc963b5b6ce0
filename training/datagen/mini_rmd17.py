"""mini-rmd17 (rMD17 role, downstream): GFN2-xTB Langevin MD of the eight rMD17 molecules.

    python -m training.datagen.mini_rmd17 --out data/mini/mini_rmd17 --seed 0

Per molecule (aspirin, ethanol, malonaldehyde (the H-bonded enol, as in MD17), naphthalene, salicylic acid,
toluene, uracil, benzene): rdkit ETKDG geometry, GFN2-xTB pre-relaxation, Langevin MD at 500 K with a 0.5 fs step
(friction 0.02 / fs), ``--equil`` steps discarded, then a frame every ``--stride`` steps: trajectory A gives
``--n-train`` + ``--n-val`` frames (random val draw, as rMD17's 950 / 50), an independent trajectory B gives
``--n-test`` test frames. ``info["molecule"]`` names the molecule; all molecules share the three split files.
Energies eV, forces eV/A (rMD17 npz uses kcal/mol: 1 eV = 23.0605 kcal/mol).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import command_line, run_chunked
from .molecular_md import md_units, molecule_md_frames

DATASET = "mini-rmd17"
METHOD = "GFN2-xTB (tblite 0.8 via tblite.ase.TBLite), Langevin MD"
MOLECULES = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "ethanol": "CCO",
    "malonaldehyde": "O=C/C=C\\O",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic_acid": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "uracil": "O=c1cc[nH]c(=O)[nH]1",
    "benzene": "c1ccccc1",
}


def generate(out: Path, seed: int = 0, n_train: int = 950, n_val: int = 50, n_test: int = 200, stride: int = 5,
             equil: int = 400, timestep_fs: float = 0.5, temperature_K: float = 500.0, molecules=None,
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
                       command=command_line("mini_rmd17", out, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test,
                                            stride=stride, equil=equil),
                       desc="mini-rmd17 xTB MD (molecules)", stop_after_chunks=stop_after_chunks, progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=950)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--stride", type=int, default=5, help="MD steps (0.5 fs) between saved frames")
    ap.add_argument("--equil", type=int, default=400, help="discarded equilibration steps per trajectory")
    ap.add_argument("--molecules", nargs="*", default=None, choices=list(MOLECULES))
    args = ap.parse_args(argv)
    return generate(args.out, args.seed, args.n_train, args.n_val, args.n_test, args.stride, args.equil,
                    molecules=args.molecules)


if __name__ == "__main__":
    main()
