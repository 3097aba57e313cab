"""GHN2: graph in, node embeddings and predicted parameter tensors out.

``encode(batch) -> (N, hid)`` embeds every node of a :class:`~ghn_core.graph.GraphBatch` (op and
shape embeddings, gated GNN sweeps, LayerNorm); ``decode(h, targets)`` turns node states into the
tensors the targets ask for. ``ghn(batch)`` does both for every parameter of every graph and
writes nothing anywhere: :mod:`ghn_core.model.predict` puts tensors into networks.
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ClassesWarning, GhnNasError, GraphError
from ..graph import NORM_KINDS, OP_NAMES, SOURCE_KINDS, Graph, GraphBatch
from .batchnorm import use_batch_statistics

from .config import GHN2Config
from .decoder import ConvDecoder, Decoder1D, normalize_bias, normalize_norm_weight, tile, weight_scale
from .gnn import GatedGNN, SweepPlan, sweep_plan
from .shape import ShapeEncoder, canonical_shape

__all__ = ["GHN2", "ParamTarget", "ROLES", "param_targets"]

# How a predicted tensor is produced and normalised.
ROLES = ("weight", "embedding", "norm_weight", "bias", "classifier_weight", "classifier_bias")
ONE_D_ROLES = ("norm_weight", "bias", "classifier_bias")  # decoded as rows of 2d values, not blocks


@dataclass(frozen=True)
class ParamTarget:
    """One tensor to predict: from node ``node`` of the batch, for parameter ``name`` of graph ``graph``.

    ``role``: "weight" (>= 2-D, fan-in normalised), "embedding" (>= 2-D, positional encodings and
    tokens: not normalised), "norm_weight" (1-D gamma), "bias" (1-D), "classifier_weight" and
    "classifier_bias" (the last layer, through the class heads).
    """

    graph: int
    node: int
    name: str
    shape: tuple[int, ...]
    role: str


class GHN2(nn.Module):
    """The GHN-2 hypernetwork (see :class:`GHN2Config` for its knobs and ``get_config`` for variants)."""

    def __init__(self, config: GHN2Config):
        super().__init__()
        if config.num_op_types < 1:
            raise ValueError(f"expected num_op_types >= 1, got {config.num_op_types}")
        self.config = config
        hid = config.hid
        self.op_embed = nn.Embedding(config.num_op_types, hid)
        self.shape_embed = ShapeEncoder(hid, config.num_classes, config.max_spatial)
        if config.gnn == "gatedgnn":
            self.gnn = GatedGNN(hid, virtual_edges=config.virtual_edges > 0, s_max=max(config.virtual_edges, 1))
        elif config.gnn == "mlp":
            self.gnn = nn.Sequential(nn.Linear(hid, hid), nn.ReLU(), nn.Linear(hid, hid), nn.ReLU())
        else:
            raise ValueError(f"expected gnn 'gatedgnn' or 'mlp', got {config.gnn!r} instead")
        self.ln = nn.LayerNorm(hid) if config.layernorm else nn.Identity()
        self.decoder = ConvDecoder(hid, config.max_spatial)
        self.decoder_1d = Decoder1D(hid)
        block = 2 * hid
        self.class_weight = nn.Linear(block, config.num_classes)  # the reference's 1x1 conv over out-channels
        self.class_bias = nn.Linear(block, config.num_classes)

    # -- encoding -----------------------------------------------------------------------------------
    def sweep_plans(self, batch) -> tuple[SweepPlan, SweepPlan]:
        s_max = self.gnn.s_max
        return (sweep_plan(batch.edge_index, batch.edge_dist, batch.level_fwd, reverse=False, s_max=s_max),
                sweep_plan(batch.edge_index, batch.edge_dist, batch.level_bwd, reverse=True, s_max=s_max))

    def encode(self, batch) -> torch.Tensor:
        """(N, hid): final node states of every graph of ``batch`` (after LayerNorm)."""
        h = self.op_embed(batch.node_op) + self.shape_embed(batch.param_shape)  # (N, hid)
        if isinstance(self.gnn, GatedGNN):
            h = self.gnn(h, *self.sweep_plans(batch))
        else:
            h = self.gnn(h)
        return self.ln(h)

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, h: torch.Tensor, targets: list[ParamTarget]) -> list[torch.Tensor]:
        """Predicted tensors for ``targets`` (same order), normalised per role."""
        return [expand(block, t) for block, t in zip(self.decode_blocks(h, targets), targets)]

    def decode_blocks(self, h: torch.Tensor, targets: list[ParamTarget]) -> list[torch.Tensor]:
        """The compact predictions for ``targets``: normalised blocks that :func:`expand` tiles to shape.

        A weight's block is at most (2d, 2d, s, s) in its canonical 4-D shape; a 1-D tensor's is at
        most 2d values. Every value of a full tensor is a copy of one of its block's values.
        """
        out: list[torch.Tensor | None] = [None] * len(targets)
        B, s = self.decoder.block, self.decoder.s
        groups: dict[tuple, list[int]] = defaultdict(list)
        one_d = []
        for k, t in enumerate(targets):
            if t.role in ONE_D_ROLES:
                one_d.append(k)
                continue
            o, i, kh, kw = canonical_shape(t.shape)
            if t.role == "classifier_weight":
                o = B  # the class head reads the whole out-channel block
            groups[(min(o, B), min(i, B), min(kh, s), min(kw, s))].append(k)

        for (o, i, kh, kw), ks in groups.items():
            nodes = torch.tensor([targets[k].node for k in ks], device=h.device)
            blocks = self.decoder(h[nodes], o, i, kh, kw)  # (n, o, i, kh, kw)
            for block, k in zip(blocks, ks):
                out[k] = self._finish_weight(block, targets[k])

        if one_d:
            nodes = torch.tensor([targets[k].node for k in one_d], device=h.device)
            rows = self.decoder_1d(h[nodes])  # (n, 2, B)
            for row, k in zip(rows, one_d):
                t = targets[k]
                # Elementwise normalisation commutes with tiling: apply it to the 64 values.
                if t.role == "norm_weight":
                    p = normalize_norm_weight(row[0]) if self.config.weight_norm else row[0]
                else:  # a bias; the classifier's goes through ReLU and a linear map onto the classes
                    p = row[1] if t.role == "bias" else self.class_bias(F.relu(row[1]))
                    p = normalize_bias(p) if self.config.weight_norm else p
                out[k] = p
        return out  # type: ignore[return-value]

    def _finish_weight(self, block: torch.Tensor, t: ParamTarget) -> torch.Tensor:
        """Normalise a decoded block for the target (still a block: :func:`expand` tiles it)."""
        if t.role == "classifier_weight":
            # (B, i', 1, 1) -> ReLU -> linear over the out-channel axis -> (classes, i')
            block = self.class_weight(F.relu(block[:, :, 0, 0]).t())  # (i', classes)
            block = block.t()[:, :, None, None]
        if self.config.weight_norm and t.role in ("weight", "classifier_weight"):
            # The scale depends only on the target's shape, so it is applied to the small block
            # rather than to the tiled tensor (one pass over the full parameter saved).
            block = block * weight_scale(canonical_shape(t.shape))
        return block

    def forward(self, batch, targets: list[ParamTarget]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Predicted tensors for ``targets`` and the (N, hid) node embeddings."""
        h = self.encode(batch)
        return self.decode(h, targets), h

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- the user-facing API ------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.config.image_size, self.config.image_size)

    @property
    def s_max(self) -> int:
        """The longest virtual edge of this GHN's graphs (1: none)."""
        return max(self.config.virtual_edges, 1)

    def graphs(self, models: Sequence[nn.Module], *, strict: bool = False) -> list[Graph]:
        """The computational graphs of ``models`` with this GHN's virtual-edge cutoff.

        Raises :class:`GraphError` for a model that is not a classifier of this GHN's images: one
        whose forward fails on them, or returns anything but (batch, classes) logits. A classifier of
        another number of classes than the GHN's gets a :class:`ClassesWarning` (its head is cut or
        tiled from the GHN's class rows, so those classes mean nothing); ``strict=True`` raises instead.
        """
        graphs = []
        for m in models:
            g = Graph.from_module(m, self.input_shape, s_max=self.s_max, strict=strict)
            if g.output_shape is not None and len(g.output_shape) != 2:
                raise GraphError(f"{type(m).__name__} is not a classifier: on input {self.input_shape} its forward "
                                 f"returned shape {g.output_shape}; a GHN predicts parameters of nets that "
                                 f"return (batch, classes) logits")
            classes = g.output_shape[1] if g.output_shape is not None else None
            if classes is not None and classes != self.config.num_classes:
                problem = (f"{type(m).__name__} has {classes} classes, but this GHN was trained for "
                           f"{self.config.num_classes}: its classifier is cut or tiled from the GHN's "
                           f"{self.config.num_classes} class rows (tiled, classes k and k+{self.config.num_classes} "
                           f"tie), so its predicted head means nothing; use a GHN of {classes} classes")
                if strict:
                    raise GraphError(problem)
                warnings.warn(problem, ClassesWarning, stacklevel=2)
            graphs.append(g)
        return graphs

    def predict_params(self, models: Sequence[nn.Module], graphs: Sequence[Graph] | None = None
                       ) -> list[dict[str, torch.Tensor]]:
        """Predicted tensors for every supported parameter of each model, as {name: tensor} dicts.

        Differentiable (training uses it through ``torch.func.functional_call``); nothing is written.
        """
        targets, blocks = self._predict_blocks(models, graphs)
        out: list[dict[str, torch.Tensor]] = [{} for _ in models]
        for t, block in zip(targets, blocks):
            out[t.graph][t.name] = expand(block, t)
        return out

    def _predict_blocks(self, models: Sequence[nn.Module], graphs: Sequence[Graph] | None
                        ) -> tuple[list[ParamTarget], list[torch.Tensor]]:
        graphs = self.graphs(models) if graphs is None else graphs
        batch = GraphBatch.from_graphs(graphs, device=next(self.parameters()).device)
        targets = param_targets(batch, models)
        return targets, self.decode_blocks(self.encode(batch), targets)

    @torch.no_grad()
    def predict(self, model: nn.Module, *, graph: Graph | None = None, strict: bool = False) -> nn.Module:
        """Fill every supported parameter of ``model`` with the GHN's prediction and return the model.

        Writes the predicted tensors into the model's parameters (moved to their device), and
        switches its BatchNorm layers to batch statistics (running statistics dropped), as in the
        paper's evaluation protocol: accuracy then depends on the batch, in ``train()`` and
        ``eval()`` alike. To evaluate with fixed statistics, call
        :func:`ghn_core.model.calibrate_bn` on a few batches afterwards. Parameters the graph
        builder could not map are left as they were and named in a :class:`GraphWarning`; a model of
        another number of classes than the GHN's gets a ``ClassesWarning``. ``strict=True`` raises
        for both instead.
        """
        return self.predict_batch([model], None if graph is None else [graph], strict=strict)[0]

    @torch.no_grad()
    def predict_batch(self, models: Sequence[nn.Module], graphs: Sequence[Graph] | None = None, *,
                      strict: bool = False) -> list[nn.Module]:
        """:meth:`predict` for several models in one GHN forward pass (their graphs batched)."""
        was_training = self.training
        self.eval()
        try:
            targets, blocks = self._predict_blocks(models, self.graphs(models, strict=strict) if graphs is None else graphs)
        finally:
            self.train(was_training)
        # Every predicted value is a copy of a block value, so checking the small blocks checks
        # them all. Nothing is written if it trips.
        finite = torch.stack([torch.isfinite(b).all() for b in blocks]) if blocks else torch.ones(0, dtype=torch.bool)
        if not finite.all():
            t = targets[int((~finite).nonzero()[0])]
            raise GhnNasError(f"the GHN predicted non-finite values for {type(models[t.graph]).__name__} (first: "
                              f"{t.name}); its weights are probably corrupt or diverged: load another checkpoint")
        for t, block in zip(targets, blocks):
            param = models[t.graph].get_parameter(t.name)
            param.copy_(expand(block.to(device=param.device, dtype=param.dtype), t))
        for model in models:
            use_batch_statistics(model)
        return list(models)

    @torch.no_grad()
    def embed(self, models: Sequence[nn.Module] | None = None, *, graphs: Sequence[Graph] | None = None,
              batch_size: int = 16) -> torch.Tensor:
        """(n, hid) graph embeddings: the mean of each graph's final node states (GHN in eval mode).

        Give ``models`` (traced here) or their ``graphs`` (e.g. ``architecture_graph`` of DeepNets-1M
        records, which need no network at all).
        """
        if (models is None) == (graphs is None):
            raise ValueError("expected exactly one of models or graphs")
        if graphs is None:
            graphs = self.graphs(models)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        rows = []
        try:
            for start in range(0, len(graphs), batch_size):
                batch = GraphBatch.from_graphs(graphs[start: start + batch_size], device=device)
                h = self.encode(batch)  # (N, hid)
                sums = torch.zeros(batch.num_graphs, h.shape[1], device=device).index_add_(0, batch.batch, h)
                counts = (batch.ptr[1:] - batch.ptr[:-1]).to(h.dtype).unsqueeze(1)
                rows.append(sums / counts)
        finally:
            self.train(was_training)
        return torch.cat(rows).cpu() if rows else torch.zeros(0, self.config.hid)

    def extra_repr(self) -> str:
        c = self.config
        return f"variant={c.variant}, hid={c.hid}, max_spatial={c.max_spatial}, num_classes={c.num_classes}"


def expand(block: torch.Tensor, t: ParamTarget) -> torch.Tensor:
    """The full tensor for ``t`` from its compact block (``GHN2.decode_blocks``): tiled, differentiable."""
    if t.role in ONE_D_ROLES:
        return tile(block, (math.prod(t.shape),)).view(t.shape)
    return _to_shape(tile(block, canonical_shape(t.shape)), t.shape)


def _is_tokens(shape: tuple[int, ...]) -> bool:
    """(1, T, D): a token table, canonically (1, D, h, w) with the tokens along the last axis."""
    return len(shape) == 3 and shape[0] == 1


def _to_shape(w: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A canonical 4-D tensor back to the parameter's own shape (inverse of ``canonical_shape``)."""
    shape = tuple(shape)
    if w.shape == shape:
        return w
    if _is_tokens(shape):  # (1, D, h, w) -> (1, T, D): tokens along the last axis
        tokens = tile(w.reshape(1, shape[2], -1), (1, shape[2], shape[1]))
        return tokens.transpose(1, 2)
    if w.numel() == torch.Size(shape).numel():
        return w.reshape(shape)
    raise ValueError(f"cannot predict a parameter of shape {shape}: expected at most 4 dimensions")


def param_targets(batch: GraphBatch, models: Sequence[nn.Module]) -> list[ParamTarget]:
    """One :class:`ParamTarget` per parameter tensor a graph node predicts (norm nodes: two)."""
    ops = batch.node_op.tolist()
    classifier = batch.node_is_classifier.tolist()
    ptr = batch.ptr.tolist()
    targets = []
    for g, model in enumerate(models):
        shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
        for j, (name, bias_name) in enumerate(zip(batch.node_name[g], batch.node_bias_name[g])):
            if not name:
                continue
            node = ptr[g] + j
            kind = OP_NAMES[ops[node]]
            shape = shapes[name]
            if kind in NORM_KINDS or (kind == "layer_scale" and len(shape) == 1):
                role = "norm_weight"
            elif kind == "bias":
                role = "classifier_bias" if classifier[node] else "bias"
            elif kind in SOURCE_KINDS or kind == "layer_scale":
                role = "embedding"
            else:
                role = "classifier_weight" if classifier[node] else "weight"
            targets.append(ParamTarget(g, node, name, shape, role))
            if bias_name:
                targets.append(ParamTarget(g, node, bias_name, shapes[bias_name], "bias"))
    return targets
