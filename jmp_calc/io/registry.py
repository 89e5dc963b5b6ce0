"""Models by name: an explicit table from a name to where the files are and how to check them.

``embedded`` models ship inside the package (offline); ``hub`` models are downloaded once with huggingface_hub at a
pinned revision and verified by sha256 before they are loaded. Entries whose files are not published yet say so
(``published=False``) and loading them explains where to get the weights instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnknownModelError

__all__ = ["ModelEntry", "REGISTRY", "list_models", "get_entry", "UnknownModelError"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    license: str
    source: str  #: "embedded" or "hub"
    kind: str = "jmp_calc"  #: "jmp_calc" (model.safetensors + config.json) or "jmp-lightning" (original .pt)
    repo_id: str | None = None
    revision: str | None = None  #: a commit hash: pinned, never a moving branch
    files: tuple[tuple[str, str], ...] = field(default_factory=tuple)  #: (filename, sha256) pairs
    published: bool = True
    where: str = ""  #: where to get the weights by hand when they are not on the Hub
    task: str | None = None  #: fine-tuning task (``python -m training.finetune --task ...``) of a task model


_JMP_NOTE = ("Original release: https://jmp-iclr-datasets.s3.amazonaws.com/{f} (CC-BY-NC 4.0). Download it and pass "
             "the path: JMPCalculator('/path/to/{f}', head='oc20').")

REGISTRY: dict[str, ModelEntry] = {
    "jmp-mini-general": ModelEntry(
        name="jmp-mini-general", source="embedded", license="MIT",
        description="default: jmp-mini-s (v2, before its conservative tail) fine-tuned on EMT metals/surfaces + "
                    "GFN2-xTB organic molecules (two "
                    "heads, chosen per structure: only H/C/N/O -> molecules, else surfaces; conservative, stress)"),
    "jmp-mini-emt": ModelEntry(
        name="jmp-mini-emt", source="embedded", license="MIT",
        description="small GemNet-OC trained from scratch on EMT metal slabs + adsorbates and bulk metals"),
    "jmp-mini-s": ModelEntry(
        name="jmp-mini-s", source="embedded", license="MIT",
        description="mini-JMP backbone (v2) pre-trained here on mini-oc20/ani1x/largemol/t1x (4 heads, 28,250 "
                    "direct-force steps + 2,000 conservative ones); fine-tune it offline with training.finetune "
                    "--base jmp-mini-s"),
    "jmp-mini-l": ModelEntry(
        name="jmp-mini-l", source="embedded", license="MIT",
        description="larger mini-JMP backbone (v2 L, 929k parameters, 3 blocks) pre-trained on the same corpus as "
                    "jmp-mini-s (4 heads, 29,000 direct-force steps + 1,000 conservative ones); fine-tune it "
                    "offline with training.finetune --base jmp-mini-l"),
    "jmp-mini-s-ethanol": ModelEntry(
        name="jmp-mini-s-ethanol", source="embedded", license="MIT",
        description="jmp-mini-s (v1) fine-tuned on GFN2-xTB MD of ethanol (conservative forces; test 81 meV/A)"),
    "jmp-s": ModelEntry(
        name="jmp-s", source="hub", kind="jmp-lightning", license="CC-BY-NC 4.0",
        description="released JMP-S backbone (44 M) with its 4 pre-training heads: oc20, oc22, ani1x, transition1x",
        repo_id="jmp-calc/jmp-s", files=(("jmp-s.pt", ""),), published=False,
        where=_JMP_NOTE.format(f="jmp-s.pt")),
    "jmp-l": ModelEntry(
        name="jmp-l", source="hub", kind="jmp-lightning", license="CC-BY-NC 4.0",
        description="released JMP-L backbone (234 M) with its 4 pre-training heads: oc20, oc22, ani1x, transition1x",
        repo_id="jmp-calc/jmp-l", files=(("jmp-l.pt", ""),), published=False,
        where=_JMP_NOTE.format(f="jmp-l.pt")),
}

#: task models the training stack will publish (``python -m training.publish``): fine-tuned from the released
#: JMP-S/L weights, hence CC-BY-NC 4.0. Not on the Hub yet: no revision or sha256 is known, loading one explains how
#: to fine-tune it yourself.
_TASK_MODELS = [  # (name, base, task, description)
    ("jmp-s-md22", "jmp-s", "md22-stachyose", "JMP-S fine-tuned on MD22 stachyose (energy + conservative forces)"),
    ("jmp-l-md22", "jmp-l", "md22-stachyose", "JMP-L fine-tuned on MD22 stachyose (energy + conservative forces)"),
    ("jmp-s-rmd17", "jmp-s", "rmd17-aspirin", "JMP-S fine-tuned on rMD17 aspirin (energy + conservative forces)"),
    ("jmp-l-qm9-u0", "jmp-l", "qm9-U0", "JMP-L fine-tuned on QM9 U0 (internal energy at 0 K, eV; no forces)"),
    ("jmp-s-spice", "jmp-s", "spice-dipeptides", "JMP-S fine-tuned on SPICE dipeptides (energy + forces)"),
    ("jmp-s-matbench-mp-e-form", "jmp-s", "matbench-mp_e_form",
     "JMP-S fine-tuned on MatBench mp_e_form (formation energy per atom, eV/atom; property model)"),
    ("jmp-s-qmof", "jmp-s", "qmof-bandgap", "JMP-S fine-tuned on QMOF band gaps (eV; property model)"),
]
for _name, _base, _task, _desc in _TASK_MODELS:
    REGISTRY[_name] = ModelEntry(
        name=_name, source="hub", license="CC-BY-NC 4.0", description=_desc,
        repo_id=f"jmp-calc/{_name}", revision=None, files=(("model.safetensors", ""), ("config.json", "")),
        published=False, task=_task,
        where=(f"Fine-tune it yourself from the released {_base} weights (CC-BY-NC 4.0): python -m training.finetune "
               f"--task {_task} --data-dir DATA --base {_base} --out DIR, then JMPCalculator('DIR')."))


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))} "
                                "(or pass a path to a model directory or checkpoint)") from None


def _head_choice(entry: ModelEntry) -> str:
    """How the head is chosen, from the model card (read for embedded models; JMP checkpoints are pre-training)."""
    if entry.kind == "jmp-lightning":
        return "(choose: head=...)"
    if entry.source != "embedded":
        return "(from the model card)"
    import json
    from pathlib import Path

    from ..card import ModelCard

    path = Path(__file__).resolve().parents[1] / "models" / entry.name / "config.json"
    if not path.is_file():
        return "(not installed)"
    card = ModelCard.from_dict(json.loads(path.read_text()).get("card"), where=str(path))
    if card.pretraining:
        return "(choose: head=...)"
    if card.head_rules:
        return "per structure: " + ", ".join(r.head for r in card.head_rules)
    return card.default_head or "(first head)"


def list_models(print_table: bool = True) -> list[dict]:
    """The registry as a list of dicts; prints a table unless ``print_table=False``. The ``head`` column comes from
    each model's card (embedded models) or its kind (JMP pre-training checkpoints need ``head=``)."""
    rows = [{"name": e.name, "source": e.source if e.published else f"{e.source} (not published yet)",
             "license": e.license, "head": _head_choice(e), "description": e.description}
            for e in REGISTRY.values()]
    if print_table:
        widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
        print("  ".join(k.ljust(widths[k]) for k in widths))
        for r in rows:
            print("  ".join(str(r[k]).ljust(widths[k]) for k in widths))
    return rows
