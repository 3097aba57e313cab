"""``nn.Module`` -> raw computational graph: run ``forward`` once and record the data flow.

How it works
------------
The model runs once, on the meta device (no memory, no arithmetic), under a
:class:`torch.overrides.TorchFunctionMode` that sees every torch function call. Each tensor that
derives from the input or from a parameter node carries its *provenance*: the set of graph nodes
whose output it holds. A call looks itself up in :data:`~ghn_core.graph.vocab.FUNCTION_OPS`:

* a layer function (``F.conv2d``, ``F.linear``, a norm, ``F.multi_head_attention_forward``) whose
  weight is a parameter creates its weight node (and a ``bias`` node after it), fed by the
  provenance of its data input; its output's provenance is the last of these nodes;
* a parameter-free op of the vocabulary (pooling, global pooling, sum, concat, gate, attention)
  creates a node when it combines data from the graph;
* anything else (activations, reshapes, slicing, dropout, ...) creates no node: its output's
  provenance is the union of its inputs'.

A parameter that reaches any other function is *used directly* (``x + self.pos_embedding``); the
module owning it is looked up in the module table (:func:`~ghn_core.graph.vocab.module_param_kind`).
A ``source`` kind (pos_enc, cls_token, rel_pos_bias) becomes a node without incoming edges;
any other kind is placed inline, fed by the data it first meets (``self.layer_scale * y``). A
parameter of an unknown module type is followed through functions of itself alone (``expand``,
slicing, ``exp``) to where it meets data, and classified there by the function and the shapes
(:func:`~ghn_core.graph.vocab.raw_param_kind`: positional embedding, class token, layer scale); one
whose uses fit none of these is reported by name.

Tensors that derive from neither the input nor a parameter (buffers such as Swin-V2's relative
coordinate table, constants made inside forward) are treated as coming from the input node.

Afterwards, nodes that do not reach the output are pruned (their parameters are reported), and
the rest are sorted topologically in creation order, so the input is first and the classifier last.
A parameter used twice (a module called twice) gets one node per use, with the same name.
"""
from __future__ import annotations

import heapq
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import DisconnectedGraphError, GraphError, UnsupportedModuleError
from .vocab import CONV_KINDS, FUNCTION_OPS, SOURCE_KINDS, check_overrides, module_param_kind, raw_param_kind

__all__ = ["RawGraph", "trace_module", "finish_raw_graph", "canonical_shape", "GraphWarning"]


class GraphWarning(UserWarning):
    """Parameters of a module that got no node in its graph (each one named)."""


def canonical_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """A parameter shape as GHN-2's 4-D (out, in, h, w) (§3.1 of the reference).

    (c,) -> (c, 1, 1, 1); (o, i) -> (o, i, 1, 1); (1, T, D) -> (1, D, floor(sqrt T), floor(sqrt T));
    other 3-D (a, b, c) -> (a, b, c, 1); 4-D unchanged; 5-D and up fold the middle dims into h.
    """
    s = tuple(int(d) for d in shape)
    if len(s) == 0:
        return (1, 1, 1, 1)
    if len(s) == 1:
        return (s[0], 1, 1, 1)
    if len(s) == 2:
        return (s[0], s[1], 1, 1)
    if len(s) == 3:
        if s[0] == 1:
            side = math.isqrt(s[1])
            return (1, s[2], side, side)
        return (s[0], s[1], s[2], 1)
    if len(s) == 4:
        return s  # type: ignore[return-value]
    return (s[0], s[1], math.prod(s[2:-1]), s[-1])


@dataclass
class RawGraph:
    """The traced graph before virtual edges: nodes in topological order, real edges."""

    kinds: list[str]
    shapes: list[tuple[int, int, int, int]]
    names: list[str]
    bias_names: list[str]
    edge_index: np.ndarray          # (2, E) int64, real edges, src < dst
    is_classifier: np.ndarray       # (N,) bool
    skipped: dict[str, str] = field(default_factory=dict)   # parameter name -> why it has no node
    unsupported: dict[str, str] = field(default_factory=dict)  # parameter name -> owner module type
    output_shape: tuple[int, ...] | None = None  # of the (first) tensor forward returned


# -- provenance records -----------------------------------------------------------------------------

QK, PROBS, FROM_INPUT = 1, 2, 4   # product of two data tensors / attention probabilities / derives from input
_EMPTY = frozenset()
_NO_INFO = (_EMPTY, 0)
_NORM_SLOTS = {  # (weight, bias) argument positions
    F.batch_norm: (3, 4), F.instance_norm: (3, 4), F.layer_norm: (2, 3), F.group_norm: (2, 3),
}
if hasattr(F, "rms_norm"):
    _NORM_SLOTS[F.rms_norm] = (2, None)
_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def _arg(args: tuple, kwargs: dict, pos: int | None, name: str, default: Any = None) -> Any:
    if pos is not None and len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


def _tensors_out(out: Any) -> tuple:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (tuple, list)) and type(out) is not torch.Size:
        return tuple(o for o in out if isinstance(o, torch.Tensor))
    return ()


def _as_tuple(v: Any, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _pool_shape(k: Sequence[int]) -> tuple[int, int, int, int]:
    k = [int(x) for x in k]
    if len(k) == 1:
        return (1, 1, 1, k[0])
    return (1, 1, k[-2], k[-1])


class _Tracer(TorchFunctionMode):
    """Records nodes and edges while forward runs; see the module docstring."""

    def __init__(self, param_names: dict[int, str], modules: dict[str, nn.Module],
                 overrides: Mapping | None, fast: bool):
        super().__init__()
        self.param_names = param_names
        self.modules = modules
        self.overrides = overrides
        self.fast = fast                  # meta tensors: shape-preserving ops are not run
        self.kinds: list[str] = ["input"]
        self.shapes: list[tuple] = [(0, 0, 0, 0)]
        self.names: list[str] = [""]
        self.bias_names: list[str] = [""]
        self.edges: set[tuple[int, int]] = set()
        self.info: dict[int, tuple[frozenset, int]] = {}
        self.alive: list[torch.Tensor] = []   # keeps ids in ``info`` from being reused
        self.pending: set[int] = set()       # inline parameter nodes not yet fed by data
        self.alias: dict[int, torch.Tensor] = {}  # tensor computed from one parameter alone -> that parameter
        self.raw: dict[str, str] = {}       # parameters of unknown module types seen -> owner type

    # -- bookkeeping --
    def new_node(self, kind: str, shape=(0, 0, 0, 0), name: str = "", bias_name: str = "") -> int:
        self.kinds.append(kind)
        self.shapes.append(shape)
        self.names.append(name)
        self.bias_names.append(bias_name)
        return len(self.kinds) - 1

    def set_info(self, out: Any, info: tuple[frozenset, int]) -> None:
        if not info[0]:
            return
        for t in _tensors_out(out):
            self.info[id(t)] = info
            self.alive.append(t)

    def tensor_info(self, t: torch.Tensor) -> tuple[frozenset, int]:
        info = self.info.get(id(t))
        if info is not None:
            return info
        if id(t) in self.param_names:
            return self.direct_use(t)
        return _NO_INFO

    def gather(self, args: Sequence, kwargs: Mapping | None = None) -> list[tuple[frozenset, int]]:
        infos = []
        for a in (*args, *kwargs.values()) if kwargs else args:
            if isinstance(a, torch.Tensor):
                infos.append(self.tensor_info(a))
            elif isinstance(a, (list, tuple)):
                infos.extend(self.tensor_info(b) for b in a if isinstance(b, torch.Tensor))
        return infos

    @staticmethod
    def union(infos: Sequence[tuple[frozenset, int]]) -> tuple[frozenset, int]:
        if len(infos) == 1:
            return infos[0]
        prov, flags = _EMPTY, 0
        for p, f in infos:
            prov = prov | p
            flags |= f
        return prov, flags

    def connect(self, prov: frozenset, node: int) -> None:
        """Edges from the producers of a layer's data to ``node`` (the input node for constants)."""
        if not prov:
            self.edges.add((0, node))
        for p in prov:
            if p in self.pending:   # an inline parameter computed from constants only
                self.pending.discard(p)
                self.edges.add((0, p))
            self.edges.add((p, node))

    @property
    def unsupported(self) -> dict[str, str]:
        """Parameters of unknown module types whose uses got no node -> owner module type."""
        noded = {*self.names, *self.bias_names}
        return {n: t for n, t in self.raw.items() if n not in noded}

    def direct_use(self, t: torch.Tensor) -> tuple[frozenset, int]:
        """A parameter reaching a function other than its layer's: a node of its module's kind.

        A module type without a kind gives no node here: the parameter is followed (see
        :meth:`note_alias`) to where it meets data, and :meth:`classify_raw` decides there."""
        name = self.param_names[id(t)]
        owner_path, _, attr = name.rpartition(".")
        owner = self.modules[owner_path]
        kind = module_param_kind(owner, attr, self.overrides)
        if kind is None:
            self.raw.setdefault(name, f"{type(owner).__module__}.{type(owner).__qualname__}")
            return _NO_INFO
        return self.param_node(t, kind, name)

    def param_node(self, t: torch.Tensor, kind: str, name: str) -> tuple[frozenset, int]:
        node = self.new_node(kind, canonical_shape(t.shape), name)
        if kind not in SOURCE_KINDS:
            self.pending.add(node)
        return frozenset((node,)), 0

    def classify_raw(self, use: str, tensors: Sequence[torch.Tensor], out: Any,
                     dim: int | None = None) -> list[tuple[frozenset, int]]:
        """Infos of ``tensors`` meeting in a function of kind ``use``; a tensor that stands for a
        parameter of an unknown module type gets a node when the use fits one (``raw_param_kind``)."""
        infos = [self.tensor_info(t) for t in tensors]
        data = next((t for t, (p, _) in zip(tensors, infos) if p), None)
        y = _tensors_out(out)
        if data is None or not y:
            return infos
        for i, t in enumerate(tensors):
            p = self.param_of(t)
            if p is None or infos[i][0]:
                continue
            name = self.param_names[id(p)]
            if name not in self.raw:
                continue
            kind = raw_param_kind(use, tuple(t.shape), tuple(data.shape), tuple(y[0].shape), dim)
            if kind is not None:
                infos[i] = self.param_node(p, kind, name)
        return infos

    def meet(self, infos: Sequence[tuple[frozenset, int]]) -> tuple[frozenset, int] | None:
        """Place pending inline parameter nodes that meet data; None when there are none."""
        if not self.pending:
            return None
        prov, flags = self.union(infos)
        pend = prov & self.pending
        if not pend:
            return None
        data = prov - pend
        if not data:          # still a computation on the parameter alone (e.g. clamp(...).exp())
            return prov, flags
        for n in pend:
            self.pending.discard(n)
            for d in data:
                self.edges.add((d, n))
        return frozenset(pend), flags

    # -- dispatch --
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = FUNCTION_OPS.get(func)
        if op is None:
            return self.transparent(func, args, kwargs)
        return getattr(self, "op_" + op.handler)(func, op.kind, args, kwargs)

    def transparent(self, func, args, kwargs):
        out = func(*args, **kwargs)
        if out is None:
            if func is torch.Tensor.__setitem__ and isinstance(args[0], torch.Tensor):
                info = self.union(self.gather(args))
                self.set_info(args[0], info)
            return out
        if not _tensors_out(out):
            return out
        infos = self.gather(args, kwargs)
        if infos:
            info = self.meet(infos) or self.union(infos)
            self.set_info(out, info)
            if not info[0]:
                self.note_alias(out, args, kwargs)
        return out

    def note_alias(self, out, args, kwargs) -> None:
        """``out`` computed from one parameter and constants (``b.clone()``, ``w.to(dtype)``): remember
        the parameter, so a layer receiving ``out`` as its weight or bias predicts that parameter."""
        found = None
        for a in (*args, *kwargs.values()):
            if isinstance(a, torch.Tensor):
                p = a if id(a) in self.param_names else self.alias.get(id(a))
                if p is not None:
                    if found is not None and p is not found:
                        return
                    found = p
        if found is not None:
            for t in _tensors_out(out):
                self.alias[id(t)] = found
                self.alive.append(t)

    def param_of(self, t: Any) -> torch.Tensor | None:
        """The parameter a layer argument stands for: itself, or the one it was computed from."""
        if not isinstance(t, torch.Tensor):
            return None
        return t if id(t) in self.param_names else self.alias.get(id(t))

    def op_constant(self, func, kind, args, kwargs):
        return func(*args, **kwargs)

    def op_same_shape(self, func, kind, args, kwargs):
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor):
            return self.transparent(func, args, kwargs)
        out = x.detach() if self.fast else func(*args, **kwargs)
        infos = self.gather((x,))
        self.set_info(out, self.meet(infos) or infos[0])
        if not infos[0][0]:
            self.note_alias(out, (x,), {})
        return out

    def layer(self, out, x, w, b, kind: str) -> Any:
        """Weight node (+ bias node) fed by ``x``; ``w`` is a parameter (see :meth:`param_of`)."""
        prov, flags = self.union(self.gather((x,)))
        node = self.new_node(kind, canonical_shape(w.shape), self.param_names[id(w)])
        self.connect(prov, node)
        last = node
        if isinstance(b, torch.Tensor):
            pb = self.param_of(b)
            if pb is not None:
                last = self.new_node("bias", canonical_shape(pb.shape), self.param_names[id(pb)])
                self.edges.add((node, last))
            else:   # a computed bias: its producers feed the layer
                for p in self.tensor_info(b)[0]:
                    self.edges.add((p, node))
        self.set_info(out, (frozenset((last,)), flags & FROM_INPUT))
        return out

    def op_conv(self, func, kind, args, kwargs, transposed: bool = False):
        x, w, b = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
        w = self.param_of(w)
        if w is None:
            return self.transparent(func, args, kwargs)
        groups = _arg(args, kwargs, 6, "groups", 1)
        dilation = _arg(args, kwargs, 7 if transposed else 5, "dilation", 1)
        if groups != 1:
            kind = "dil_conv" if max(_as_tuple(dilation, 1)) > 1 else "sep_conv"
        return self.layer(func(*args, **kwargs), x, w, b, kind)

    def op_conv_transpose(self, func, kind, args, kwargs):
        return self.op_conv(func, kind, args, kwargs, transposed=True)

    def op_linear(self, func, kind, args, kwargs):
        x, w, b = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
        w = self.param_of(w)
        if w is None:
            return self.transparent(func, args, kwargs)
        return self.layer(func(*args, **kwargs), x, w, b, kind)

    def op_norm(self, func, kind, args, kwargs):
        x = _arg(args, kwargs, 0, "input")
        iw, ib = _NORM_SLOTS[func]
        w = self.param_of(_arg(args, kwargs, iw, "weight"))
        b = self.param_of(_arg(args, kwargs, ib, "bias")) if ib is not None else None
        wname = self.param_names[id(w)] if w is not None else None
        bname = self.param_names[id(b)] if b is not None else None
        if wname is None and bname is None:
            return self.op_same_shape(func, kind, args, kwargs) if self.fast else self.transparent(func, args, kwargs)
        out = x.detach() if self.fast and isinstance(x, torch.Tensor) else func(*args, **kwargs)
        prov, flags = self.union(self.gather((x,)))
        node = self.new_node(kind, canonical_shape((w if wname else b).shape), wname or bname, bname if wname else "")
        self.connect(prov, node)
        self.set_info(out, (frozenset((node,)), flags & FROM_INPUT))
        return out

    def _free_node(self, out, kind: str, infos, shape=(0, 0, 0, 0), keep_flags: int = FROM_INPUT):
        prov, flags = self.union(infos)
        node = self.new_node(kind, shape)
        self.connect(prov, node)
        self.set_info(out, (frozenset((node,)), flags & keep_flags))
        return node

    def op_pool(self, func, kind, args, kwargs):
        out = func(*args, **kwargs)
        x = _arg(args, kwargs, 0, "input")
        infos = self.gather((x,))
        if not infos or not infos[0][0]:
            return out
        k = _as_tuple(_arg(args, kwargs, 1, "kernel_size"), 2)
        self._free_node(out, kind, infos, _pool_shape(k))
        return out

    def op_adaptive_pool(self, func, kind, args, kwargs):
        out = func(*args, **kwargs)
        x = _arg(args, kwargs, 0, "input")
        infos = self.gather((x,))
        if not infos or not infos[0][0]:
            return out
        nd = int(func.__name__.rstrip("d")[-1])            # adaptive_avg_pool2d -> 2
        y = _tensors_out(out)[0]
        size_in, size_out = tuple(x.shape[-nd:]), tuple(y.shape[-nd:])
        if kind == "avg_pool" and all(s == 1 for s in size_out):
            self._free_node(out, "glob_avg", infos)
        else:
            k = [math.ceil(i / o) for i, o in zip(size_in, size_out)]
            self._free_node(out, kind, infos, _pool_shape(k))
        return out

    def op_mean(self, func, kind, args, kwargs):
        x, dim = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "dim")
        if not isinstance(x, torch.Tensor) or dim is None or x.dim() not in (3, 4):
            return self.transparent(func, args, kwargs)
        dims = {d % x.dim() for d in _as_tuple(dim, 1)}
        spatial = (x.dim() == 4 and dims and dims <= {2, 3}) or (x.dim() == 3 and dims == {1})
        infos = self.gather((x,))
        if not spatial or not infos[0][0]:
            return self.transparent(func, args, kwargs)
        out = func(*args, **kwargs)
        self._free_node(out, kind, infos)
        return out

    def _merge(self, out, kind: str, infos, tensors: Sequence[torch.Tensor]):
        met = self.meet(infos)
        if met is not None:
            self.set_info(out, met)
            return out
        provs = {p for p, _ in infos if p}
        if len(provs) >= 2:
            self._free_node(out, kind, infos, keep_flags=FROM_INPUT | QK | PROBS)
        elif infos:
            self.set_info(out, self.union(infos))
            if not provs:
                self.note_alias(out, tuple(tensors), {})
        return out

    def op_merge(self, func, kind, args, kwargs):
        out = func(*args, **kwargs)
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        return self._merge(out, kind, self.classify_raw(kind, tensors, out), tensors)

    def op_cat(self, func, kind, args, kwargs):
        out = func(*args, **kwargs)
        tensors = [t for t in _arg(args, kwargs, 0, "tensors", ()) if isinstance(t, torch.Tensor)]
        dim = _arg(args, kwargs, 1, "dim", 0)
        dim = dim if isinstance(dim, int) else None     # a named dimension: no class token
        return self._merge(out, kind, self.classify_raw(kind, tensors, out, dim), tensors)

    def op_softmax(self, func, kind, args, kwargs):
        x = _arg(args, kwargs, 0, "input")
        infos = self.gather((x,)) if isinstance(x, torch.Tensor) else []
        if not infos or not infos[0][1] & QK or not infos[0][0]:
            return self.transparent(func, args, kwargs)
        out = func(*args, **kwargs)
        node = self._free_node(out, kind, infos)
        self.set_info(out, (frozenset((node,)), (infos[0][1] & FROM_INPUT) | PROBS))
        return out

    def op_matmul(self, func, kind, args, kwargs):
        out = func(*args, **kwargs)
        operands = args[1:] if func is torch.einsum else args
        infos = self.gather(operands, kwargs)
        met = self.meet(infos)
        if met is not None:
            self.set_info(out, met)
            return out
        probs = [i for i in infos if i[1] & PROBS]
        if probs:      # attention probabilities @ values: the values feed the attention node
            prov, flags = self.union(probs)
            others, _ = self.union([i for i in infos if not i[1] & PROBS] or [_NO_INFO])
            for m in prov:
                if self.kinds[m] == "msa":
                    for o in others:
                        self.edges.add((o, m))
            self.set_info(out, (prov, flags & FROM_INPUT))
        elif sum(1 for p, _ in infos if p) >= 2:
            prov, flags = self.union(infos)
            self.set_info(out, (prov, flags | QK))
        elif infos:
            self.set_info(out, self.union(infos))
        return out

    def op_sdpa(self, func, kind, args, kwargs):
        out = func(*args, **kwargs)
        q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
        mask = _arg(args, kwargs, 3, "attn_mask")
        infos = self.gather((q, k, v, mask))
        if not any(p for p, _ in infos):
            self.set_info(out, self.union(infos) if infos else _NO_INFO)
            return out
        self._free_node(out, kind, infos)
        return out

    def op_mha(self, func, kind, args, kwargs):
        out = func(*args, **kwargs)
        a = _MHA_SIGNATURE.bind(*args, **kwargs).arguments
        pn = self.param_names
        data = [self.union(self.gather((a[n],))) for n in ("query", "key", "value")]
        heads = []
        separate = a.get("use_separate_proj_weight", False)
        for d, n in ((self.union(data), "in_proj_weight"),) if not separate else zip(
                data, ("q_proj_weight", "k_proj_weight", "v_proj_weight")):
            w = self.param_of(a.get(n))
            if w is None:
                return self.transparent_result(out, args, kwargs)
            heads.append(self.new_node("conv", canonical_shape(w.shape), pn[id(w)]))
            self.connect(d[0], heads[-1])
        tail = heads
        for n in ("in_proj_bias", "bias_k", "bias_v"):
            b = self.param_of(a.get(n))
            if b is not None:
                node = self.new_node("bias", canonical_shape(b.shape), pn[id(b)])
                for t in tail:
                    self.edges.add((t, node))
                tail = [node] if n == "in_proj_bias" else [*tail, node]
        attn = self.new_node(kind)
        for t in tail:
            self.edges.add((t, attn))
        mask = a.get("attn_mask")
        if isinstance(mask, torch.Tensor):
            for p in self.tensor_info(mask)[0]:
                self.edges.add((p, attn))
        last = attn
        for n, k in (("out_proj_weight", "conv"), ("out_proj_bias", "bias")):
            w = self.param_of(a.get(n))
            if w is not None:
                node = self.new_node(k, canonical_shape(w.shape), pn[id(w)])
                self.edges.add((last, node))
                last = node
        flags = self.union(data)[1] & FROM_INPUT
        outs = out if isinstance(out, tuple) else (out,)
        self.set_info(outs[0], (frozenset((last,)), flags))
        if len(outs) > 1 and isinstance(outs[1], torch.Tensor):
            self.set_info(outs[1], (frozenset((attn,)), flags))
        return out

    def transparent_result(self, out, args, kwargs):
        infos = self.gather(args, kwargs)
        if infos:
            self.set_info(out, self.meet(infos) or self.union(infos))
        return out


# -- running the model --------------------------------------------------------------------------------

def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise GraphError(f"expected input_shape as a tuple of ints such as (1, 3, 32, 32), "
                         f"got {input_shape!r} instead") from None
    if not shape or any(d < 1 for d in shape):
        raise GraphError(f"expected input_shape of positive sizes such as (1, 3, 32, 32), got {shape} instead")
    return shape


def _run(model: nn.Module, shape: tuple[int, ...], overrides, meta: bool,
         names: list[tuple[str, torch.Tensor]], buffers: list[tuple[str, torch.Tensor]]):
    """One traced forward. ``meta``: on meta copies of every tensor; else on the model's own tensors."""
    dtype = next((p.dtype for _, p in names if p.is_floating_point()), torch.get_default_dtype())
    modules = dict(model.named_modules(remove_duplicate=False))
    if meta:
        copies: dict[int, torch.Tensor] = {}
        state = {}
        for n, t in (*names, *buffers):
            if id(t) not in copies:
                copies[id(t)] = t if t.device.type == "meta" else torch.empty_like(t, device="meta")
            state[n] = copies[id(t)]
        needs_copies = any(copies[id(t)] is not t for _, t in (*names, *buffers))
        param_names = {}
        for n, t in names:
            param_names.setdefault(id(copies[id(t)]), n)
        x = torch.empty(shape, dtype=dtype, device="meta")
    else:
        needs_copies = False
        param_names = {}
        for n, t in names:
            param_names.setdefault(id(t), n)
        device = next((p.device for _, p in names), torch.device("cpu"))
        x = torch.randn(shape, dtype=dtype, device=device)
    tracer = _Tracer(param_names, modules, overrides, fast=meta)
    tracer.info[id(x)] = (frozenset((0,)), FROM_INPUT)
    with torch.no_grad(), tracer:
        if needs_copies:
            out = torch.func.functional_call(model, state, (x,))
        else:
            out = model(x)
    return tracer, out


def trace_module(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32), *,
                 module_kinds: Mapping | None = None, strict: bool = False) -> RawGraph:
    """Trace ``model`` on an input of ``input_shape`` into a :class:`RawGraph` (see module docstring).

    Runs in eval mode (restored afterwards) on meta copies of the model's tensors; a forward that
    cannot run on meta (data-dependent control flow) is retried once on the model's own device.

    Raises:
        GraphError: not a module, no parameters, a forward that fails, an output that does not
            depend on the input, a cycle.
        UnsupportedModuleError: with ``strict=True``, when a parameter is used directly by a module
            type without a node kind (otherwise it is listed in ``skipped``).
    """
    if not isinstance(model, nn.Module):
        raise GraphError(f"expected an nn.Module, got {type(model).__name__} instead")
    shape = _check_input_shape(input_shape)
    overrides = check_overrides(module_kinds)
    names = list(model.named_parameters(remove_duplicate=False))
    if not names:
        raise GraphError(f"{type(model).__name__} has no parameters: there is nothing to predict")
    buffers = list(model.named_buffers(remove_duplicate=False))
    all_meta = all(t.device.type == "meta" for _, t in (*names, *buffers))

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        try:
            tracer, out = _run(model, shape, overrides, True, names, buffers)
        except GraphError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of user code is reported below
            if all_meta:
                raise GraphError(f"forward failed on input of shape {shape}: {type(err).__name__}: {err}") from err
            try:   # data-dependent forward: run it for real once
                tracer, out = _run(model, shape, overrides, False, names, buffers)
            except GraphError:
                raise
            except Exception as err2:  # noqa: BLE001
                raise GraphError(
                    f"forward failed on input of shape {shape}: {type(err2).__name__}: {err2}") from err2
    finally:
        for m, mode in modes:
            m.training = mode
    return _finish(model, tracer, out, strict)


def _finish(model: nn.Module, tracer: _Tracer, out: Any, strict: bool) -> RawGraph:
    y = _first_tensor(out)
    if y is None:
        raise GraphError(f"{type(model).__name__}.forward returned no tensor (got {type(out).__name__})")
    prov, flags = tracer.info.get(id(y), _NO_INFO)
    if not flags & FROM_INPUT:
        raise DisconnectedGraphError(f"the output of {type(model).__name__} does not depend on its input")
    unsupported = tracer.unsupported
    if strict and unsupported:
        listing = "; ".join(f"{n} (used directly by {t})" for n, t in unsupported.items())
        raise UnsupportedModuleError(
            f"no node kind for parameters: {listing}. Give their module type one with "
            f"ghn_core.graph.register_module(ModuleType, kind) or Graph.from_module(..., module_kinds=...)")

    for p in list(tracer.pending):      # inline parameters never met by data: fed by constants
        tracer.edges.add((0, p))
    return finish_raw_graph(tracer.kinds, tracer.shapes, tracer.names, tracer.bias_names, tracer.edges, prov,
                            model_name=type(model).__name__,
                            param_names=[name for name, _ in model.named_parameters()],
                            unsupported=unsupported, output_shape=tuple(y.shape))


def finish_raw_graph(kinds: Sequence[str], shapes: Sequence[tuple], names: Sequence[str],
                     bias_names: Sequence[str], edges: Collection[tuple[int, int]], out: Collection[int], *,
                     model_name: str, param_names: Sequence[str], unsupported: Mapping[str, str] | None = None,
                     output_shape: tuple[int, ...] | None = None) -> RawGraph:
    """Nodes in creation order (node 0 the input) and real edges -> the :class:`RawGraph`.

    Keeps the nodes that reach ``out`` (the nodes the output tensor holds), sorts them topologically
    with ties broken by creation order, flags the classifier, and lists in ``skipped`` every name of
    ``param_names`` (``model.named_parameters()``, in order) without a node. Shared by the tracer and
    by builders that emit the tracer's nodes without running a model (:mod:`ghn_core.graph.nb201`).
    """
    unsupported = unsupported or {}
    n_all = len(kinds)
    src = np.fromiter((e[0] for e in edges), dtype=np.int64, count=len(edges))
    dst = np.fromiter((e[1] for e in edges), dtype=np.int64, count=len(edges))

    # keep the nodes that reach the output (reverse BFS)
    preds: list[list[int]] = [[] for _ in range(n_all)]
    for s, d in zip(src.tolist(), dst.tolist()):
        preds[d].append(s)
    keep = np.zeros(n_all, dtype=bool)
    stack = list(out)
    while stack:
        v = stack.pop()
        if not keep[v]:
            keep[v] = True
            stack.extend(preds[v])
    keep[0] = True

    # topological order, ties broken by creation order (the input is created first)
    mask = keep[src] & keep[dst]
    src, dst = src[mask], dst[mask]
    indeg = np.zeros(n_all, dtype=np.int64)
    np.add.at(indeg, dst, 1)
    succ: list[list[int]] = [[] for _ in range(n_all)]
    for s, d in zip(src.tolist(), dst.tolist()):
        succ[s].append(d)
    indeg_l = indeg.tolist()
    heap = [v for v in range(n_all) if keep[v] and indeg_l[v] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        v = heapq.heappop(heap)
        order.append(v)
        for d in succ[v]:
            indeg_l[d] -= 1
            if indeg_l[d] == 0:
                heapq.heappush(heap, d)
    n_keep = int(keep.sum())
    if len(order) != n_keep:
        stuck = sorted({names[v] or kinds[v] for v in range(n_all) if keep[v] and v not in set(order)})
        raise GraphError(f"the traced graph of {model_name} has a cycle through: {', '.join(stuck[:10])}")
    if order[0] != 0:
        raise GraphError("internal error: the input node is not first")   # cannot happen: it has no predecessor
    new_id = np.full(n_all, -1, dtype=np.int64)
    new_id[order] = np.arange(n_keep)
    edge_index = np.stack([new_id[src], new_id[dst]])

    traced = {n for n in names if n} | {n for n in bias_names if n}
    kinds = [kinds[v] for v in order]
    names = [names[v] for v in order]
    bias_names = [bias_names[v] for v in order]
    shapes = [shapes[v] for v in order]

    # the classifier: the last weight of a conv/linear and the bias right after it (GHN-2's flags)
    is_cls = np.zeros(n_keep, dtype=bool)
    last_w = max((i for i, k in enumerate(kinds) if k in CONV_KINDS), default=None)
    if last_w is not None:
        is_cls[last_w] = True
        following = edge_index[1][edge_index[0] == last_w]
        for d in following.tolist():
            if kinds[d] == "bias":
                is_cls[d] = True

    covered = {n for n in names if n} | {n for n in bias_names if n}
    skipped = {}
    for name in param_names:
        if name in covered:
            continue
        if name in unsupported:
            t = unsupported[name]
            skipped[name] = (f"used directly in forward by {t}, which has no node kind, in a way that fits "
                             f"none of positional embedding, class token, layer scale "
                             f"(register_module({t.rsplit('.', 1)[-1]}, kind) gives it one)")
        elif name in traced:
            skipped[name] = "does not influence the output"
        else:
            skipped[name] = "not used in forward (traced in eval mode)"
    return RawGraph(kinds, shapes, names, bias_names, edge_index, is_cls, skipped, dict(unsupported),
                    output_shape)
