"""Radial, circular and spherical bases of GemNet-OC, and their shared down-projections.

Every radial basis is the same function of distance (JMP uses an absolute 12 A scale even for 8 A molecular
graphs): ``envelope(x) * exp(-|temps| (x - offset)^2)`` with ``x = d / absolute_rbf_cutoff``, offsets
``linspace(0, 1, num_radial)`` and ``temps = 0.5 (num_radial - 1)^2``. The original code keeps six copies of it as
buffers; we evaluate it once per graph and check the checkpoint's copies at load time.

Angular bases are real spherical harmonics with m = 0, ``sqrt((2l+1)/4pi) P_l(cos)``, l = 0..num_spherical-1;
the spherical (two-angle) basis is their outer product over (cos angle_cab, cos dihedral_cabd).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Dense, he_orthogonal_

__all__ = ["GaussianRBF", "legendre_basis", "legendre_outer_basis", "BasisEmbedding", "Bases"]


class GaussianRBF(nn.Module):
    """Gaussian radial basis times the polynomial envelope. Input: distances (E,) in A; output (E, num_radial)."""

    def __init__(self, num_radial: int, cutoff: float, exponent: int = 5):
        super().__init__()
        self.cutoff = float(cutoff)
        p = exponent
        self.env_coeffs = (-(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2)
        self.p = p
        offset = torch.linspace(0.0, 1.0, num_radial)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("temps", torch.full_like(offset, 0.5 / (1.0 / (num_radial - 1)) ** 2), persistent=False)

    def envelope(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = self.env_coeffs
        xp = x**self.p
        env = 1 + a * xp + b * xp * x + c * xp * x * x
        return torch.where(x < 1, env, torch.zeros_like(x))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x = d / self.cutoff
        offset = self.offset.to(d.dtype)
        temps = self.temps.to(d.dtype)
        g = torch.exp(-((x[:, None] - offset[None, :]) ** 2) * temps.abs())
        return self.envelope(x)[:, None] * g


def legendre_basis(cos: torch.Tensor, num_spherical: int) -> torch.Tensor:
    """``sqrt((2l+1)/(4 pi)) P_l(cos)`` for l < num_spherical. (T,) -> (T, num_spherical)."""
    p = [torch.ones_like(cos)]
    if num_spherical > 1:
        p.append(cos)
    for l in range(2, num_spherical):
        p.append(((2 * l - 1) * cos * p[l - 1] - (l - 1) * p[l - 2]) / l)
    norms = [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)]
    return torch.stack([n * pl for n, pl in zip(norms, p)], dim=1)


def legendre_outer_basis(cos_cab: torch.Tensor, angle_cabd: torch.Tensor, num_spherical: int) -> torch.Tensor:
    """Outer product of the Legendre bases of an angle and a dihedral. (Q,) x (Q,) -> (Q, num_spherical**2)."""
    a = legendre_basis(cos_cab, num_spherical)
    b = legendre_basis(torch.cos(angle_cabd), num_spherical)
    return (a[:, :, None] * b[:, None, :]).reshape(cos_cab.shape[0], num_spherical * num_spherical)


def scatter_padded(values: torch.Tensor, outer: torch.Tensor, inner: torch.Tensor, size: int, kmax: int) -> torch.Tensor:
    """Place ``values[i]`` at ``[outer[i], inner[i]]`` of a zero tensor (size, kmax, *values.shape[1:])."""
    out = values.new_zeros((size, kmax) + tuple(values.shape[1:]))
    out[outer, inner] = values
    return out


class BasisEmbedding(nn.Module):
    """Projects a radial basis with a weight ``(num_radial, num_spherical, emb)`` (or ``(emb, num_radial)`` when
    there is no angular part), the first half of GemNet's efficient bilinear layer."""

    def __init__(self, num_radial: int, emb_size: int, num_spherical: int | None = None):
        super().__init__()
        self.num_spherical = num_spherical
        shape = (emb_size, num_radial) if num_spherical is None else (num_radial, num_spherical, emb_size)
        self.weight = nn.Parameter(torch.empty(shape))
        he_orthogonal_(self.weight)

    def radial(self, rad: torch.Tensor) -> torch.Tensor:
        """(E, num_radial) -> (E, emb, num_spherical) or (E, emb) without angular part."""
        if self.num_spherical is None:
            return rad @ self.weight.T
        w = self.weight.reshape(self.weight.shape[0], -1)
        return (rad @ w).reshape(rad.shape[0], self.weight.shape[2], self.num_spherical)


class Bases(nn.Module):
    """Computes every basis the interaction blocks need, plus the initial edge embedding ``m``.

    Parameter names follow the released checkpoints (``backbone.bases.*``).
    """

    def __init__(self, cfg):
        super().__init__()
        nr, ns = cfg.num_radial, cfg.num_spherical
        self.num_spherical = ns
        self.rbf = GaussianRBF(nr, cfg.absolute_rbf_cutoff, cfg.envelope_exponent)
        self.mlp_rbf_qint = Dense(nr, cfg.emb_size_rbf)
        self.mlp_cbf_qint = BasisEmbedding(nr, cfg.emb_size_cbf, ns)
        self.mlp_sbf_qint = BasisEmbedding(nr, cfg.emb_size_sbf, ns**2)
        self.mlp_rbf_aeint = Dense(nr, cfg.emb_size_rbf)
        self.mlp_cbf_aeint = BasisEmbedding(nr, cfg.emb_size_cbf, ns)
        self.mlp_rbf_eaint = Dense(nr, cfg.emb_size_rbf)
        self.mlp_cbf_eaint = BasisEmbedding(nr, cfg.emb_size_cbf, ns)
        self.mlp_rbf_aint = BasisEmbedding(nr, cfg.emb_size_rbf)
        self.mlp_rbf_tint = Dense(nr, cfg.emb_size_rbf)
        self.mlp_cbf_tint = BasisEmbedding(nr, cfg.emb_size_cbf, ns)
        self.mlp_rbf_h = Dense(nr, cfg.emb_size_rbf)
        self.mlp_rbf_out = Dense(nr, cfg.emb_size_rbf)
        self.edge_emb = EdgeEmbedding(cfg.emb_size_atom, nr, cfg.emb_size_edge, act=cfg.activation,
                                      dropout=cfg.dropout)

    def forward(self, h: torch.Tensor, geo: dict, g) -> dict:
        """``geo``: distances/unit vectors per graph (see backbone); ``g``: the :class:`GraphBatch`."""
        ns = self.num_spherical
        n_atoms = h.shape[0]
        main, a2e, qint, a2a = g.main, g.a2ee2a, g.qint, g.a2a
        d_main, v_main = geo["main"]
        d_a2e, v_a2e = geo["a2ee2a"]
        d_q, v_q = geo["qint"]
        d_a2a, _ = geo["a2a"]

        rbf_main = self.rbf(d_main)
        rbf_a2e = self.rbf(d_a2e)

        # --- triplets c->a<-b on the main graph
        t = g.trip_e2e
        cos_cab = _cos(v_main[t.out], v_main[t.inp])
        rw = self.mlp_cbf_tint.radial(rbf_main)
        e2e = {
            "rad": self.mlp_rbf_tint(rbf_main),
            "cir": (rw, _padded_sph(legendre_basis(cos_cab, ns), t.out, t.out_agg, rbf_main.shape[0], t.kmax)),
        }

        # --- quadruplets d->b->a<-c
        q = g.quad
        v_ba = v_q[q.tin_out]
        v_db = v_main[q.tin_in]
        cos_abd = _cos(v_ba, v_db)
        cross_db = torch.cross(v_db, v_ba, dim=-1)[q.trip_in_to_quad]
        v_ca = v_main[q.tout_out]
        v_ba2 = v_q[q.tout_in]
        cos_cab_q = _cos(v_ca, v_ba2)
        cross_ca = torch.cross(v_ca, v_ba2, dim=-1)[q.trip_out_to_quad]
        dihedral = _angle(cross_ca, cross_db)
        rbf_q = self.rbf(d_q)
        cir_q = self.mlp_cbf_qint.radial(rbf_q)[q.tin_out]  # (T_in, emb_cbf, ns)
        cir_q = (cir_q @ legendre_basis(cos_abd, ns)[:, :, None]).squeeze(-1)
        sph_q = legendre_outer_basis(cos_cab_q[q.trip_out_to_quad], dihedral, ns)
        qint_b = {
            "rad": self.mlp_rbf_qint(rbf_main),
            "cir": cir_q,
            "sph": (self.mlp_sbf_qint.radial(rbf_main),
                    _padded_sph(sph_q, q.out, q.out_agg, rbf_main.shape[0], q.kmax)),
        }

        # --- atom -> edge: a2ee2a edges b->a feeding main edges c->a
        t = g.trip_a2e
        cos = _cos(v_main[t.out], v_a2e[t.inp])
        a2e_b = {
            "rad": self.mlp_rbf_aeint(rbf_a2e),
            "cir": (self.mlp_cbf_aeint.radial(rbf_main),
                    _padded_sph(legendre_basis(cos, ns), t.out, t.out_agg, rbf_main.shape[0], t.kmax)),
        }

        # --- edge -> atom: main edges b->a feeding a2ee2a edges c->a, then summed onto atoms
        t = g.trip_e2a
        cos = _cos(v_a2e[t.out], v_main[t.inp])
        rw = self.mlp_cbf_eaint.radial(rbf_a2e)  # (E_a2e, emb, ns)
        rw = scatter_padded(rw, a2e.index[1], a2e.inner, n_atoms, a2e.kmax)  # (N, K, emb, ns)
        rw = rw.transpose(1, 2).reshape(n_atoms, rw.shape[2], rw.shape[1] * ns)  # (N, emb, K*ns)
        e2a_b = {
            "rad": self.mlp_rbf_eaint(rbf_main),
            "cir": (rw, _padded_sph(legendre_basis(cos, ns), t.out, t.out_agg, rbf_a2e.shape[0], t.kmax)),
        }

        # --- atom <-> atom
        rw = self.mlp_rbf_aint.radial(self.rbf(d_a2a))  # (E_a2a, emb)
        rw = scatter_padded(rw, a2a.index[1], a2a.inner, n_atoms, a2a.kmax).transpose(1, 2)  # (N, emb, K)

        return {
            "m": self.edge_emb(h, rbf_main, main.index),
            "atom_update": self.mlp_rbf_h(rbf_main),
            "output": self.mlp_rbf_out(rbf_main),
            "qint": qint_b,
            "e2e": e2e,
            "a2e": a2e_b,
            "e2a": e2a_b,
            "a2a": rw,
        }


class EdgeEmbedding(nn.Module):
    """``m_st = act(W [h_s, h_t, x_st])`` for every edge."""

    def __init__(self, atom_features: int, edge_features: int, out_features: int, *, act: str,
                 dropout: float | None = None):
        super().__init__()
        self.dense = Dense(2 * atom_features + edge_features, out_features, act=act, dropout=dropout)

    def forward(self, h: torch.Tensor, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.dense(torch.cat([h[index[0]], h[index[1]], x], dim=-1))


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1).clamp(-1.0, 1.0)


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between vectors via atan2(|a x b|, a.b); |a x b| clamped to 1e-9 to keep gradients finite."""
    x = (a * b).sum(-1)
    y = torch.cross(a, b, dim=-1).norm(dim=-1).clamp(min=1e-9)
    return torch.atan2(y, x)


def _padded_sph(sph: torch.Tensor, outer: torch.Tensor, inner: torch.Tensor, size: int, kmax: int) -> torch.Tensor:
    """(T, S) basis values -> (size, S, kmax) dense per-output-edge matrix (zeros where no triplet)."""
    return scatter_padded(sph, outer, inner, size, kmax).transpose(1, 2)
