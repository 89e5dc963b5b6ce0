"""Load a released JMP checkpoint (jmp-s.pt / jmp-l.pt, CC-BY-NC 4.0) from a local path and use a pre-training
head zero-shot, or export it to our safetensors format.

    # the released weights: https://jmp-iclr-datasets.s3.amazonaws.com/jmp-s.pt
    python examples/load_released_checkpoint.py /path/to/jmp-s.pt --head oc20 --export jmp-s-dir

Without a path it loads tests/data/jmp-ref-small.pt, a small checkpoint in the same layout with random weights
(for trying the mechanics only: its numbers mean nothing).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", type=Path,
                    default=Path(__file__).resolve().parents[1] / "tests" / "data" / "jmp-ref-small.pt")
    ap.add_argument("--head", default="oc20", choices=["oc20", "oc22", "ani1x", "transition1x"])
    ap.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    ap.add_argument("--export", type=Path, help="write model.safetensors + config.json here")
    args = ap.parse_args(argv)
    from ase.build import add_adsorbate, fcc111

    from jmp_calc import JMPCalculator
    from jmp_calc.io import save_model

    calc = JMPCalculator(args.checkpoint, head=args.head, ema=not args.raw)
    model = calc.model
    print(f"loaded {args.checkpoint.name}: {sum(p.numel() for p in model.parameters()):,} parameters, heads "
          f"{model.head_names}, graph of head {args.head}: {calc.potential.graph}")
    slab = fcc111("Pt", size=(3, 3, 4), vacuum=10.0)
    add_adsorbate(slab, "O", 1.8, "fcc")
    slab.calc = calc
    print(f"{args.head} head on O/Pt(111): E = {slab.get_potential_energy():.4f} eV, "
          f"max |F| = {abs(slab.get_forces()).max():.4f} eV/A")
    if args.export:
        save_model(model, args.export, card={"license": "CC-BY-NC 4.0", "source": str(args.checkpoint)},
                   overwrite=True)
        print(f"exported to {args.export}/ (load it with JMPCalculator('{args.export}', head='{args.head}'))")


if __name__ == "__main__":
    main()
