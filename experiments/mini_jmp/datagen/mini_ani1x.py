"""mini-ani1x (ANI-1x role): GFN2-xTB energies/forces of non-equilibrium conformers of QM9 *training-split* molecules.

    python -m experiments.mini_jmp.datagen.mini_ani1x --out data/mini/mini_ani1x --n 900 --seed 0

One unit = one QM9 training molecule (drawn without replacement from the ``train`` ids of the fixed QM9 split, see
qm9_split.py; val/test molecules are never used), starting from its QM9 (B3LYP) geometry:
* ``--n-rattle`` frames with Gaussian displacements, sigma ~ U(0.02, 0.08) A per frame;
* one Langevin MD snippet (tblite GFN2-xTB forces, T ~ U(500, 1000) K, friction 0.02 / fs, 1 fs step, Maxwell-
  Boltzmann start), ``--md-steps`` steps sampled every ``--md-stride`` steps.
info: smiles, molecule (qm9_<id>), qm9_index, sampling (rattle / md), temperature_K. Energies in eV (total xTB
energy), forces in eV/A. Splits by molecule: 90 / 5 / 5 %.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .common import assign_splits, command_line, langevin, run_chunked, single_point, unit_rng, xtb_calc

DATASET = "mini-ani1x"
METHOD = "GFN2-xTB (tblite 0.8 via tblite.ase.TBLite)"


def molecule_frames(atoms, rng: np.random.Generator, n_rattle: int, md_steps: int, md_stride: int,
                    t_range=(500.0, 1000.0), timestep_fs: float = 1.0, sigma_range=(0.02, 0.08)):
    calc = xtb_calc()
    frames = []
    for _ in range(n_rattle):
        work = atoms.copy()
        sigma = float(rng.uniform(*sigma_range))
        work.positions += rng.normal(0.0, sigma, work.positions.shape)
        try:
            frames.append(single_point(work, calc, stress=False, sampling="rattle", rattle_sigma=round(sigma, 4)))
        except Exception:  # noqa: BLE001 - SCF failure: drop the frame
            pass
    if md_steps > 0:
        temp = float(rng.uniform(*t_range))
        work = atoms.copy()
        work.calc = calc
        dyn = langevin(work, temp, timestep_fs, int(rng.integers(1 << 31)))
        try:
            for step in range(md_stride, md_steps + 1, md_stride):
                dyn.run(md_stride)
                frames.append(single_point(work, calc, stress=False, sampling="md", temperature_K=round(temp, 1),
                                           md_time_fs=step * timestep_fs))
        except Exception:  # noqa: BLE001 - SCF failure / blow-up: keep what we have
            pass
    return frames


def qm9_train_units(n: int, seed: int, split_file: Path | None, stream: int, offset: int = 0,
                    exclude_benchmarks: bool = False):
    """``n`` units, each a distinct QM9 training molecule (seeded draw), with 90/5/5 splits.

    The molecules are positions ``offset, offset + 1, ...`` of a seeded permutation of the training ids, so a run with
    ``offset`` = an earlier run's ``n`` (same seed and stream) draws molecules that run did not use.
    ``exclude_benchmarks`` skips downstream benchmark molecules and their analogues (filters.BenchmarkFilter).
    """
    from .qm9_split import load_qm9, train_ids

    ids = np.asarray(train_ids(split_file, 0), dtype=np.int64)
    if offset + n > len(ids):
        raise ValueError(f"only {len(ids)} QM9 training molecules")
    perm = ids[np.random.default_rng([seed, stream]).permutation(len(ids))]
    df = load_qm9().set_index("Index", drop=False)
    if exclude_benchmarks:
        from .filters import BenchmarkFilter

        bench = BenchmarkFilter()
        chosen = []
        for idx in perm[offset:]:
            if len(chosen) == n:
                break
            if not bench.is_analogue(df.at[idx, "SMILES"]):
                chosen.append(idx)
        if len(chosen) < n:
            raise ValueError(f"only {len(chosen)} QM9 training molecules left after offset {offset} and the filter")
    else:
        chosen = perm[offset:offset + n]
    splits = assign_splits(n, seed + stream)
    rows = df.loc[chosen]
    return [{"id": i, "split": splits[i], "row": rows.iloc[i]} for i in range(n)]


def generate(out: Path, n: int = 900, seed: int = 0, n_rattle: int = 3, md_steps: int = 24, md_stride: int = 6,
             split_file: Path | None = None, chunk_size: int = 25, stop_after_chunks=None, progress: bool = True,
             offset: int = 0, clean: bool = False):
    """``clean`` (corpus v2): skip benchmark analogues, rattle sigma <= 0.06 A, drop frames with |F| > filters.FMAX.
    ``offset``: skip the first ``offset`` molecules of the seeded draw (the v1 run used the first 900)."""
    from .filters import force_ok
    from .qm9_split import qm9_atoms

    units = qm9_train_units(n, seed, split_file, stream=1, offset=offset, exclude_benchmarks=clean)
    sigma_range = (0.02, 0.06) if clean else (0.02, 0.08)

    def make(unit):
        rng = unit_rng(seed, unit["id"] + offset)
        frames = molecule_frames(qm9_atoms(unit["row"]), rng, n_rattle, md_steps, md_stride, sigma_range=sigma_range)
        return [f for f in frames if force_ok(f)] if clean else frames

    params = {"n": n, "seed": seed, "n_rattle": n_rattle, "md_steps": md_steps, "md_stride": md_stride, "version": 1}
    extra = {}
    if offset or clean:  # v1 parameters (and so its skip-if-complete identity) stay as they were
        params.update(offset=offset, clean=clean)
        extra = {"offset": offset, "clean": clean}
    return run_chunked(out, dataset=DATASET, units=units, make_frames=make, chunk_size=chunk_size, params=params,
                       method=METHOD, desc="mini-ani1x xTB conformers", stop_after_chunks=stop_after_chunks,
                       command=command_line("mini_ani1x", out, n=n, seed=seed, n_rattle=n_rattle, md_steps=md_steps,
                                            md_stride=md_stride, **extra),
                       progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=900, help="number of QM9 training molecules")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-rattle", type=int, default=3)
    ap.add_argument("--md-steps", type=int, default=24)
    ap.add_argument("--md-stride", type=int, default=6)
    ap.add_argument("--split-file", type=Path, default=None, help="qm9_split.json (default: recompute, seed 0)")
    ap.add_argument("--chunk-size", type=int, default=25)
    ap.add_argument("--offset", type=int, default=0, help="skip the first OFFSET molecules of the seeded draw")
    ap.add_argument("--clean", type=lambda v: v.lower() in ("1", "true", "yes"), default=False,
                    help="true: corpus-v2 filters (no benchmark analogues, no frame with |F| > 20 eV/A)")
    args = ap.parse_args(argv)
    return generate(args.out, args.n, args.seed, args.n_rattle, args.md_steps, args.md_stride, args.split_file,
                    args.chunk_size, offset=args.offset, clean=args.clean)


if __name__ == "__main__":
    main()
