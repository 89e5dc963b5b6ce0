"""Export the weights of one training checkpoint of a run as a model directory, e.g. to fine-tune from a
backbone at a given pre-training step (the S vs L comparison at equal steps):

    python -m experiments.mini_jmp.checkpoint_model runs/jmp-mini-l-v2 runs/jmp-mini-l-v2/checkpoints/step9750.ckpt \
        runs/jmp-mini-l-v2-step9750

The architecture, heads and card come from ``RUN/model`` (what the run exported at its last chunk); the weights
are the checkpoint's EMA weights (what its validation used) or, without an EMA, its model weights. The card's
notes say which checkpoint and step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from jmp_calc.io.model_dir import load_model_dir, save_model
from training.module import EMA
from training.runner import checkpoint_weights


def export_checkpoint(run_dir: Path, checkpoint: Path, out: Path) -> dict:
    model = load_model_dir(run_dir / "model")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ema_key = EMA.__qualname__ if EMA.__qualname__ in state.get("callbacks", {}) else None  # Lightning's state key
    model.load_state_dict(checkpoint_weights(state, ema_key))
    kind = "EMA weights" if ema_key else "weights"
    step = int(state["global_step"])
    card = model.card.to_dict()
    notes = [n for n in card.get("notes") or [] if not n.startswith("weights of")]  # the export's, not these
    card["notes"] = [*notes, f"{kind} of checkpoint {checkpoint.name}: epoch "
                     f"{int(state['epoch'])}, step {step} (experiments.mini_jmp.checkpoint_model)"]
    model.eval()
    save_model(model, out, card=card, overwrite=True)
    return {"step": step, "epoch": int(state["epoch"]), "weights": kind}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="the run's output directory (holds model/)")
    p.add_argument("checkpoint", type=Path, help="a .ckpt file of the run")
    p.add_argument("out", type=Path, help="model directory to write")
    a = p.parse_args(argv)
    info = export_checkpoint(a.run_dir, a.checkpoint, a.out)
    print(f"{a.out}: {info['weights']} of step {info['step']} (epoch {info['epoch']})")


if __name__ == "__main__":
    main()
