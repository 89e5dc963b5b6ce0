"""GemNet-OC / JMP in plain torch (no torch_scatter, torch_sparse or torch_cluster)."""

from .backbone import GemNetOCBackbone, edge_geometry
from .jmp import JMPModel, build_pretraining_model

__all__ = ["GemNetOCBackbone", "JMPModel", "build_pretraining_model", "edge_geometry"]
