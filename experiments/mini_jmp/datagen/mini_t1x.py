"""mini-t1x (Transition-1x role): GFN2-xTB energies/forces along bond-breaking and reaction-like paths of small
organics.

    python -m experiments.mini_jmp.datagen.mini_t1x --out data/mini/mini_t1x --n 400 --seed 0

One unit = one QM9 *training-split* molecule and one path of ``--images`` frames, chosen at random:
* ``stretch`` (50 %): a random bond is scanned from 0.85x to 2.4x its length (the fragment on one side moves
  rigidly; ring bonds move both atoms) - dissociation curves;
* ``hshift`` (25 %): an H atom is moved from its heavy atom to another heavy atom within 3.2 A, path by IDPP
  interpolation (ase.mep) - a crude 1,2 / 1,3 hydrogen-shift reaction path;
* ``conformer`` (25 %): IDPP interpolation between two rdkit ETKDG+MMFF conformers of the molecule (aligned),
  falling back to ``stretch`` when the conformers coincide (RMSD < 0.3 A).
Images get a 0.01 A rattle; no NEB optimisation (paths are NEB-like initial guesses, not converged MEPs).
SCF failures drop the frame. info: smiles, molecule, qm9_index, path, image, bond / r_bond where relevant.
Splits by molecule: 90 / 5 / 5 %.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .common import command_line, run_chunked, single_point, unit_rng, xtb_calc
from .mini_ani1x import qm9_train_units

DATASET = "mini-t1x"
METHOD = "GFN2-xTB (tblite 0.8 via tblite.ase.TBLite)"


def _bonds(atoms):
    from ase.neighborlist import natural_cutoffs, neighbor_list

    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.1))
    return [(a, b) for a, b in zip(i, j) if a < b]


def _component(n, bonds, start, removed):
    adj = {k: set() for k in range(n)}
    for a, b in bonds:
        if {a, b} != set(removed):
            adj[a].add(b)
            adj[b].add(a)
    seen, stack = {start}, [start]
    while stack:
        for nb in adj[stack.pop()]:
            if nb not in seen:
                seen.add(nb)
                stack.append(nb)
    return seen


def stretch_path(atoms, rng, n_images):
    bonds = _bonds(atoms)
    if not bonds:
        return [], {}
    i, j = bonds[rng.integers(len(bonds))]
    if rng.random() < 0.5:
        i, j = j, i
    side = _component(len(atoms), bonds, j, (i, j))
    vec = atoms.positions[j] - atoms.positions[i]
    d0 = float(np.linalg.norm(vec))
    unit = vec / d0
    images = []
    for s in np.linspace(0.85, 2.4, n_images):
        img = atoms.copy()
        delta = (s - 1.0) * d0 * unit
        if i in side:  # ring bond: move both atoms apart
            img.positions[j] += 0.5 * delta
            img.positions[i] -= 0.5 * delta
        else:
            img.positions[list(side)] += delta
        img.info["r_bond"] = round(float(s * d0), 4)
        images.append(img)
    return images, {"path": "stretch", "bond": f"{atoms[i].symbol}{i}-{atoms[j].symbol}{j}"}


def _idpp(initial, final, n_images):
    import warnings

    from ase.mep import NEB

    images = [initial.copy() for _ in range(n_images - 1)] + [final.copy()]
    neb = NEB(images, method="improvedtangent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            neb.interpolate(method="idpp")
        except Exception:  # noqa: BLE001 - fall back to linear
            neb.interpolate()
    return images


def hshift_path(atoms, rng, n_images):
    bonds = _bonds(atoms)
    sym = atoms.get_chemical_symbols()
    hbonds = [(a, b) if sym[b] == "H" else (b, a) for a, b in bonds if (sym[a] == "H") != (sym[b] == "H")]
    rng.shuffle(hbonds)
    for heavy, h in hbonds:
        d = np.linalg.norm(atoms.positions - atoms.positions[h], axis=1)
        cands = [k for k in range(len(atoms)) if sym[k] != "H" and k != heavy and d[k] < 3.2]
        if not cands:
            continue
        acc = cands[rng.integers(len(cands))]
        final = atoms.copy()
        direction = atoms.positions[h] - atoms.positions[acc]
        final.positions[h] = atoms.positions[acc] + 1.05 * direction / np.linalg.norm(direction)
        return _idpp(atoms, final, n_images), {"path": "hshift", "bond": f"H{h}:{sym[heavy]}{heavy}->{sym[acc]}{acc}"}
    return stretch_path(atoms, rng, n_images)


def conformer_path(atoms, smiles, rng, n_images):
    from ase import Atoms
    from ase.build import minimize_rotation_and_translation
    from rdkit import Chem
    from rdkit.Chem import AllChem

    try:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles.replace("\\\\", "\\")))
        cids = list(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=int(rng.integers(1 << 30))))
        if len(cids) == 2:
            AllChem.MMFFOptimizeMoleculeConfs(mol)
            syms = [a.GetSymbol() for a in mol.GetAtoms()]
            ends = [Atoms(syms, positions=mol.GetConformer(c).GetPositions()) for c in cids]
            minimize_rotation_and_translation(ends[0], ends[1])
            rmsd = float(np.sqrt(((ends[0].positions - ends[1].positions) ** 2).sum(1).mean()))
            if rmsd >= 0.3:
                for e in ends:
                    e.info.update(atoms.info)
                return _idpp(ends[0], ends[1], n_images), {"path": "conformer", "rmsd": round(rmsd, 3)}
    except Exception:  # noqa: BLE001 - rdkit failure: fall back
        pass
    return stretch_path(atoms, rng, n_images)


def path_frames(atoms, rng, n_images):
    kind = rng.random()
    if kind < 0.5:
        images, desc = stretch_path(atoms, rng, n_images)
    elif kind < 0.75:
        images, desc = hshift_path(atoms, rng, n_images)
    else:
        images, desc = conformer_path(atoms, atoms.info["smiles"], rng, n_images)
    calc = xtb_calc()
    frames = []
    for k, img in enumerate(images):
        img.positions += rng.normal(0.0, 0.01, img.positions.shape)
        info = {key: atoms.info[key] for key in ("smiles", "molecule", "qm9_index")}
        info.update(desc, image=k)
        try:
            frames.append(single_point(img, calc, stress=False, **info))
        except Exception:  # noqa: BLE001 - SCF failure: drop the frame
            pass
    return frames


def generate(out: Path, n: int = 400, seed: int = 0, images: int = 10, split_file: Path | None = None,
             chunk_size: int = 20, stop_after_chunks=None, progress: bool = True):
    from .qm9_split import qm9_atoms

    units = qm9_train_units(n, seed, split_file, stream=2)

    def make(unit):
        return path_frames(qm9_atoms(unit["row"]), unit_rng(seed, unit["id"]), images)

    params = {"n": n, "seed": seed, "images": images, "version": 1}
    return run_chunked(out, dataset=DATASET, units=units, make_frames=make, chunk_size=chunk_size, params=params,
                       method=METHOD, desc="mini-t1x xTB paths", stop_after_chunks=stop_after_chunks,
                       command=command_line("mini_t1x", out, n=n, seed=seed, images=images), progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=400, help="number of paths (one QM9 training molecule each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--split-file", type=Path, default=None)
    ap.add_argument("--chunk-size", type=int, default=20)
    args = ap.parse_args(argv)
    return generate(args.out, args.n, args.seed, args.images, args.split_file, args.chunk_size)


if __name__ == "__main__":
    main()
