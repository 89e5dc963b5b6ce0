"""One dataset of a run as the trainer sees it, resolved from its :class:`~training.config.DatasetConfig`.

The config says what the user asked for (files, targets, weights, graph rule); a :class:`Task` adds what the build
decided: the resolved graph rule and which of the model's heads predict its energy and properties. The collater
reads the graph rule, tag rule and labels; the loss reads the heads, force kind and weights. Both come from one
record made in one place (:func:`training.build.build_run`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jmp_calc.config import GraphConfig

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    name: str  #: the dataset's name (metrics are logged as ``NAME/target``)
    graph: GraphConfig
    set_tags_to: int | None = None
    head: int | None = None  #: index of the energy head (None: no energy target)
    energy: bool = False  #: batches carry the energy label (the dataset's ``energy``)
    forces: str = "none"  #: direct | conservative | none (forces are trained only with an energy head)
    stress: bool = False
    fixed_atom_forces: bool = False  #: forces of fixed atoms count in the loss (DatasetConfig.fixed_atom_forces)
    energy_weight: float = 1.0  #: 0 when the energy itself is not a target (forces only)
    force_weight: float = 10.0
    stress_weight: float = 0.0
    loss: str = "mae"  #: mae | mse (DatasetConfig.loss)
    #: scalar targets: name -> (head index, loss weight)
    properties: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def has_forces(self) -> bool:
        return self.forces != "none"
