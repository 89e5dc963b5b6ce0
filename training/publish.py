"""Publish a jmp_calc model directory to the Hugging Face Hub, and print its registry entry.

    python -m training.publish DIR/model --repo-id ORG/NAME [--revision main] [--private] [--dry-run STAGING]

Checks that the directory loads as a model, writes a model card (README.md with Hub metadata: licence, training
data, metrics, intended use, how to load it), uploads model.safetensors + config.json + README.md with
``huggingface_hub``, and prints the entry to add to ``jmp_calc/io/registry.py`` (repo id, the commit it was
uploaded as, sha256 of the weights). ``--dry-run STAGING`` writes exactly the files that would be uploaded to
STAGING and touches no network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from jmp_calc.card import ModelCard
from jmp_calc.io.hub import sha256sum

__all__ = ["model_card", "stage", "publish", "registry_entry", "main"]

LICENSE_IDS = {"CC-BY-NC-4.0": "cc-by-nc-4.0", "MIT": "mit", "Apache-2.0": "apache-2.0"}


def model_card(config: dict, repo_id: str, n_params: int) -> str:
    """README.md for the Hub: YAML metadata + what the model is, its data, metrics, licence and use."""
    card = ModelCard.from_dict(config.get("card"), where="config.json")
    lic = str(card.license or "unknown")
    lic_id = LICENSE_IDS.get(lic.upper() if lic.upper() == "MIT" else lic, lic.lower())
    heads = [h["name"] for h in config["heads"]]
    metrics = card.valid_metrics or {}
    test = card.test_metrics or {}
    na = "n/a"
    lines = ["---", f"license: {lic_id}", "library_name: jmp_calc",
             "tags: [atomistic-simulation, interatomic-potential, gemnet-oc, jmp, ase]", "---", "",
             f"# {card.name or repo_id.split('/')[-1]}", "",
             f"GemNet-OC ({n_params:,} parameters) — {card.trained_from or 'trained with training.finetune'}.",
             "", "## Training data", "", f"- task: {card.task or na}",
             f"- data: {card.training_data or card.task or na}",
             f"- level of theory: {card.level_of_theory or na} "
             f"(dispersion {'included' if card.dispersion else 'not included'})",
             f"- elements: {list(card.elements) or na}", f"- structures: {na if card.n_train is None else card.n_train}"
             f" train / {na if card.n_valid is None else card.n_valid} validation", "", "## Metrics", ""]
    if metrics or test:
        lines += ["| split | metric | value |", "|---|---|---|"]
        lines += [f"| validation | {k} | {v:.5g} |" for k, v in metrics.items() if isinstance(v, (int, float))]
        lines += [f"| test | {k} MAE | {v['mae']:.5g} |" for k, v in test.items() if isinstance(v, dict)]
    else:
        lines.append("No metrics recorded in config.json.")
    lines += ["", "## Use", "", "```python", "from jmp_calc import JMPCalculator",
              f"atoms.calc = JMPCalculator(\"{repo_id.split('/')[-1]}\")  # once in the registry; or a local path",
              "```", "", f"Heads: {', '.join(heads)} (default {card.default_head or heads[0]}). Units: eV, "
              "eV/A, eV/A^3. Graph: " + json.dumps(card.graph or config["heads"][0].get("graph")) + ".",
              "", "## Intended use and limits", "",
              "Simulations of systems like the training data, with the same level of theory. Outside its elements "
              "and configurations the model extrapolates without warning beyond jmp_calc's element check.", "",
              f"## Licence\n\n{lic}" + (" (derived from the JMP weights, non-commercial use only)." if "NC" in lic
                                       else "."), ""]
    return "\n".join(lines)


def stage(model_dir: Path, repo_id: str, staging: Path) -> dict:
    """Validate ``model_dir`` and write the files to upload into ``staging``; returns the registry entry."""
    from jmp_calc.io import load_model_dir
    from jmp_calc.io.model_dir import CONFIG, WEIGHTS

    model = load_model_dir(model_dir)  # raises CheckpointError with the reason if it does not load
    config = json.loads((model_dir / CONFIG).read_text())
    staging.mkdir(parents=True, exist_ok=True)
    for f in (WEIGHTS, CONFIG):
        shutil.copy2(model_dir / f, staging / f)
    n_params = sum(p.numel() for p in model.parameters())
    (staging / "README.md").write_text(model_card(config, repo_id, n_params))
    return registry_entry(config, repo_id, sha256sum(staging / WEIGHTS), revision=None)


def registry_entry(config: dict, repo_id: str, sha256: str, revision: str | None) -> dict:
    card = ModelCard.from_dict(config.get("card"), where="config.json")
    return {"name": card.name or repo_id.split("/")[-1], "repo_id": repo_id, "filename": "model.safetensors",
            "revision": revision, "sha256": sha256, "license": card.license, "description": card.task}


def publish(model_dir: Path, repo_id: str, *, revision: str | None = None, private: bool = False,
            token: str | None = None, api=None) -> dict:
    """Upload and return the registry entry pinned to the uploaded commit. ``api``: an ``HfApi`` (tests mock it)."""
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        entry = stage(model_dir, repo_id, Path(tmp))
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id, revision=revision, repo_type="model",
                                 commit_message=f"Upload {entry['name']} (jmp_calc)")
    entry["revision"] = getattr(info, "oid", None) or revision
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.publish", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    ap.add_argument("--revision", help="branch to upload to (default main)")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--token", help="Hub token (default: HF_TOKEN / huggingface-cli login)")
    ap.add_argument("--dry-run", type=Path, metavar="STAGING", help="write the upload to STAGING, no network")
    args = ap.parse_args(argv)
    from jmp_calc.io import CheckpointError

    if "/" not in args.repo_id:
        print(f"error: --repo-id must be ORG/NAME, got {args.repo_id!r}", file=sys.stderr)
        return 2
    try:
        if args.dry_run:
            entry = stage(args.model_dir, args.repo_id, args.dry_run)
            print(f"dry run: wrote {', '.join(sorted(p.name for p in args.dry_run.iterdir()))} to {args.dry_run}")
        else:
            entry = publish(args.model_dir, args.repo_id, revision=args.revision, private=args.private,
                            token=args.token)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - network/auth errors from the Hub, said in one line
        name = type(exc).__name__
        hint = " (log in with `huggingface-cli login` or pass --token)" if "401" in str(exc) or "Unauthorized" in \
            name else ""
        print(f"error: upload to {args.repo_id} failed: {name}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}",
              file=sys.stderr)
        return 1
    print("registry entry (add to jmp_calc/io/registry.py):")
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
