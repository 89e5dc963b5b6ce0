"""Typed configuration of GemNet-OC backbones, prediction heads and graph settings.

Presets are functions: :func:`jmp_s` and :func:`jmp_l` reproduce the released JMP backbones exactly
(``BackboneConfig.base()`` / ``BackboneConfig.large()`` of the original code), :func:`tiny` is the size used by the
parity fixtures. Every config round-trips through plain dicts (``to_dict`` / ``from_dict``) so it can be written to
``config.json`` next to ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError  # re-exported: jmp_calc.config.ConfigError

__all__ = [
    "GemNetOCConfig",
    "GraphConfig",
    "HeadConfig",
    "ConfigError",
    "jmp_s",
    "jmp_l",
    "tiny",
    "PRETRAINING_HEADS",
    "pretraining_heads",
]


def _from_dict(cls, data: dict[str, Any], *, what: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {unknown}; known fields are {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as exc:  # missing required fields
        raise ConfigError(f"{what}: {exc}") from None


@dataclass
class GemNetOCConfig:
    """Architecture of a GemNet-OC backbone (the variant JMP uses: all four interaction types).

    Sizes are numbers of features; distances are in Angstrom.
    """

    num_blocks: int = 4  #: interaction blocks
    emb_size_atom: int = 256  #: atom embedding width (A)
    emb_size_edge: int = 512  #: edge embedding width
    emb_size_trip_in: int = 64  #: triplet down-projection before the bilinear layer
    emb_size_trip_out: int = 64  #: triplet width after the bilinear layer
    emb_size_quad_in: int = 32  #: quadruplet down-projection before the bilinear layer
    emb_size_quad_out: int = 32  #: quadruplet width after the bilinear layer
    emb_size_aint_in: int = 64  #: atom-atom interaction width before the bilinear layer
    emb_size_aint_out: int = 64  #: atom-atom interaction width after the bilinear layer
    emb_size_rbf: int = 16  #: radial basis projection width
    emb_size_cbf: int = 16  #: circular (one angle) basis projection width
    emb_size_sbf: int = 32  #: spherical (two angles) basis projection width
    num_spherical: int = 7  #: angular basis size (Legendre degrees 0..num_spherical-1)
    num_radial: int = 128  #: Gaussian radial basis size
    num_before_skip: int = 2  #: residual layers before the edge skip connection
    num_after_skip: int = 2  #: residual layers after the edge skip connection
    num_concat: int = 1  #: residual layers after re-embedding edges with atoms
    num_atom: int = 3  #: residual layers in atom update / output blocks
    num_output_afteratom: int = 3  #: residual layers after adding the atom embedding in output blocks
    num_atom_emb_layers: int = 2  #: residual layers transforming atom embeddings per block
    num_global_out_layers: int = 2  #: residual layers of the final energy/force MLPs
    num_elements: int = 120  #: rows of the atom embedding (row = Z - 1)
    absolute_rbf_cutoff: float = 12.0  #: Angstrom; every radial basis sees d / absolute_rbf_cutoff
    envelope_exponent: int = 5  #: polynomial envelope exponent p
    qint_tags: list[int] = field(default_factory=lambda: [1, 2])  #: tags whose edges enter the quadruplet graph
    activation: str = "scaled_silu"  #: silu(x) / 0.6
    direct_forces: bool = True  #: backbone emits per-edge force features
    #: "legendre" (JMP/GemNet-OC): Y_l(cos dihedral). The dihedral is undefined when c-a-b or a-b-d are collinear
    #: (every centrosymmetric crystal has such triplets), and the energy jumps there. "smooth": Y_l(cos dihedral)
    #: times (sin cab sin abd)^l, a polynomial in the cross products, continuous everywhere. Not JMP-compatible.
    dihedral_basis: str = "legendre"
    dropout: float | None = None  #: dropout inside dense layers (training only)
    edge_dropout: float | None = None  #: probability of dropping a2a edges (training only)

    def __post_init__(self):
        for name in (
            "num_blocks emb_size_atom emb_size_edge emb_size_trip_in emb_size_trip_out emb_size_quad_in "
            "emb_size_quad_out emb_size_aint_in emb_size_aint_out emb_size_rbf emb_size_cbf emb_size_sbf "
            "num_spherical num_radial num_elements"
        ).split():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"GemNetOCConfig.{name} must be a positive integer, got {value!r}")
        if self.num_radial < 2:
            raise ConfigError("GemNetOCConfig.num_radial must be >= 2")
        if self.activation not in ("scaled_silu", "silu"):
            raise ConfigError(f"GemNetOCConfig.activation must be 'scaled_silu' or 'silu', got {self.activation!r}")
        if self.dihedral_basis not in ("legendre", "smooth"):
            raise ConfigError("GemNetOCConfig.dihedral_basis must be 'legendre' or 'smooth', "
                              f"got {self.dihedral_basis!r}")
        if self.absolute_rbf_cutoff <= 0:
            raise ConfigError("GemNetOCConfig.absolute_rbf_cutoff must be positive")
        self.qint_tags = [int(t) for t in self.qint_tags]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GemNetOCConfig:
        return _from_dict(cls, dict(data), what="GemNetOCConfig")

    @classmethod
    def from_jmp_hparams(cls, backbone: dict[str, Any]) -> GemNetOCConfig:
        """Build from the ``backbone`` section of an original JMP checkpoint's hyper-parameters.

        Only the GemNet-OC variant used by JMP is supported; any other choice is refused with the field named.
        """
        required = {
            "rbf": lambda v: (v or {}).get("name", "gaussian") == "gaussian" and not (v or {}).get("trainable"),
            "envelope": lambda v: (v or {}).get("name", "polynomial") == "polynomial",
            "cbf": lambda v: (v or {}).get("name") == "spherical_harmonics",
            "sbf": lambda v: (v or {}).get("name") == "legendre_outer",
            "quad_interaction": lambda v: v is True,
            "atom_edge_interaction": lambda v: v is True,
            "edge_atom_interaction": lambda v: v is True,
            "atom_interaction": lambda v: v is True,
            "scale_basis": lambda v: not v,
            "unique_basis_per_layer": lambda v: not v,
            "learnable_rbf": lambda v: not v,
            "learnable_rbf_stds": lambda v: not v,
            "rbf_spherical": lambda v: v is None or v.get("name") == "gaussian",
        }
        for key, ok in required.items():
            if key in backbone and not ok(backbone[key]):
                raise ConfigError(f"unsupported GemNet-OC option in checkpoint: {key}={backbone[key]!r}")
        if backbone.get("absolute_rbf_cutoff") in (None, 0):
            raise ConfigError("checkpoint backbone has no absolute_rbf_cutoff (relative cutoffs are not supported)")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: backbone[k] for k in names if k in backbone and k != "envelope_exponent"}
        kwargs["envelope_exponent"] = int((backbone.get("envelope") or {}).get("exponent", 5))
        missing = [k for k in ("num_blocks", "emb_size_atom", "emb_size_edge", "num_radial") if k not in backbone]
        if missing:
            raise ConfigError(f"checkpoint backbone config lacks {missing}")
        return cls(**kwargs)


@dataclass
class GraphConfig:
    """How the four GemNet-OC graphs of one structure are built (JMP's per-dataset rules).

    ``max_neighbors`` n sets the per-graph caps: main n, a2ee2a floor(20n/30), qint floor(8n/30), a2a floor(1000n/30).
    """

    cutoff: float = 12.0  #: Angstrom, used by all four graphs
    max_neighbors: int = 30  #: nearest neighbours kept per target atom in the main graph
    pbc: bool | None = None  #: None = take periodicity from the structure (``atoms.pbc``)
    #: explicit caps of the other graphs (None = JMP's proportions of max_neighbors). Useful to put every cap on a
    #: closed neighbour shell of the crystals of interest: a cap inside a shell of equidistant neighbours makes the
    #: selection, and so forces, jump under tiny displacements (finite-difference phonons!).
    max_neighbors_a2ee2a: int | None = None
    max_neighbors_qint: int | None = None
    max_neighbors_a2a: int | None = None

    def __post_init__(self):
        if not self.cutoff > 0:
            raise ConfigError(f"GraphConfig.cutoff must be positive, got {self.cutoff!r}")
        if int(self.max_neighbors) < 1:
            raise ConfigError(f"GraphConfig.max_neighbors must be >= 1, got {self.max_neighbors!r}")
        self.cutoff = float(self.cutoff)
        self.max_neighbors = int(self.max_neighbors)
        for name in ("max_neighbors_a2ee2a", "max_neighbors_qint", "max_neighbors_a2a"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ConfigError(f"GraphConfig.{name} must be >= 1 or None, got {v!r}")

    @property
    def caps(self) -> dict[str, int]:
        n = self.max_neighbors
        return {"main": n,
                "a2ee2a": self.max_neighbors_a2ee2a or int(n * 20 / 30),
                "qint": self.max_neighbors_qint or int(n * 8 / 30),
                "a2a": self.max_neighbors_a2a or int(n * 1000 / 30)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GraphConfig:
        return _from_dict(cls, dict(data), what="GraphConfig")


@dataclass
class HeadConfig:
    """One prediction head on the shared backbone.

    Energies are ``model_output * energy_std + energy_mean * n_atoms_term`` (``energy_mean`` is per structure, 0
    for JMP's pre-training heads) plus, when ``atom_refs`` is given, a linear reference ``sum_i atom_refs[Z_i]``.
    Direct forces are ``model_output * force_std``.
    """

    name: str
    energy_std: float = 1.0  #: eV per model unit
    energy_mean: float = 0.0  #: eV added per structure
    force_std: float = 1.0  #: eV/Angstrom per model unit
    reduction: str = "sum"  #: how per-atom energies are pooled: sum or mean
    graph: GraphConfig = field(default_factory=GraphConfig)
    num_mlps: int = 5  #: dims of the head MLPs: [A] * num_mlps + [1]
    direct_forces: bool = True  #: the head has a direct-force MLP
    atom_refs: dict[int, float] | None = None  #: eV per element, added to the energy
    set_tags_to: int | None = None  #: JMP's molecular transforms set every tag to 2

    def __post_init__(self):
        if self.reduction not in ("sum", "mean"):
            raise ConfigError(f"HeadConfig.reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if isinstance(self.graph, dict):
            self.graph = GraphConfig.from_dict(self.graph)
        if self.atom_refs is not None:
            self.atom_refs = {int(k): float(v) for k, v in self.atom_refs.items()}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["graph"] = self.graph.to_dict()
        if self.atom_refs is not None:
            d["atom_refs"] = {str(k): v for k, v in self.atom_refs.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        return _from_dict(cls, dict(data), what="HeadConfig")


def jmp_s(**overrides) -> GemNetOCConfig:
    """JMP-S backbone (GemNet-OC ``base``): 4 blocks, edge width 512 (44.1 M parameters with 4 heads)."""
    return GemNetOCConfig(**overrides)


def jmp_l(**overrides) -> GemNetOCConfig:
    """JMP-L backbone (GemNet-OC ``large``): 6 blocks, edge width 1024 (234.3 M parameters with 4 heads)."""
    values = dict(
        num_blocks=6,
        emb_size_edge=1024,
        emb_size_trip_out=128,
        emb_size_quad_in=64,
        emb_size_quad_out=32,
        emb_size_rbf=32,
        emb_size_sbf=64,
        num_concat=4,
    )
    values.update(overrides)
    return GemNetOCConfig(**values)


def tiny(**overrides) -> GemNetOCConfig:
    """The reduced size of the parity fixture (267 k parameters with 4 heads); handy for tests."""
    values = dict(
        num_blocks=2,
        emb_size_atom=32,
        emb_size_edge=48,
        emb_size_trip_in=16,
        emb_size_trip_out=16,
        emb_size_quad_in=8,
        emb_size_quad_out=8,
        emb_size_aint_in=16,
        emb_size_aint_out=16,
        emb_size_rbf=8,
        emb_size_cbf=8,
        emb_size_sbf=16,
        num_radial=16,
        num_before_skip=1,
        num_after_skip=1,
        num_concat=1,
        num_atom=2,
        num_output_afteratom=2,
        num_atom_emb_layers=1,
        num_global_out_layers=1,
    )
    values.update(overrides)
    return GemNetOCConfig(**values)


#: JMP's pre-training heads, in checkpoint order, with the normalisation of the released models
#: (energy in eV = output * y_std; forces in eV/A = output * force_std) and the graph rules of each dataset.
PRETRAINING_HEADS: tuple[tuple[str, float, float, float, bool], ...] = (
    # name, y_std, force_std, cutoff, pbc
    ("oc20", 24.901469505465872, 0.5111534595489502, 12.0, True),
    ("oc22", 25.229595396538468, 0.25678861141204834, 12.0, True),
    ("ani1x", 2.8700712783472118, 2.131422996520996, 8.0, False),
    ("transition1x", 1.787466168382901, 0.3591422140598297, 8.0, False),
)


def pretraining_heads() -> list[HeadConfig]:
    """The four heads of a JMP pre-training checkpoint (OC20, OC22, ANI-1x, Transition-1x)."""
    heads = []
    for name, y_std, f_std, cutoff, pbc in PRETRAINING_HEADS:
        heads.append(
            HeadConfig(
                name=name,
                energy_std=y_std,
                force_std=f_std,
                graph=GraphConfig(cutoff=cutoff, max_neighbors=30, pbc=None if pbc else False),
                set_tags_to=None if pbc else 2,
            )
        )
    return heads
