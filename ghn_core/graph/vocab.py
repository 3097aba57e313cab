"""The node vocabulary of computational graphs, and the one table that decides node kinds.

Node types
----------
Ids 0-14 are GHN-2's vocabulary (``PRIMITIVES_DEEPNETS1M``), in the reference order, so a
DeepNets-1M network gives the graph GHN-2 would see. Ids 15+ are ghn-nas extensions for parameters
that modern classifiers use directly in ``forward``; they are appended so a GHN-2 checkpoint's
embedding rows 0-14 keep their meaning.

====  ============  =======  ==================================================================
id    name          params   what produces it
====  ============  =======  ==================================================================
0     max_pool      no       max pooling (param_shape (1, 1, k, k)); adaptive max pooling
1     avg_pool      no       average pooling (1, 1, k, k); adaptive average pooling to > 1x1
2     sep_conv      weight   grouped conv, dilation 1 (depthwise convs of SepConv, ResNeXt, ...)
3     dil_conv      weight   grouped conv with dilation > 1 (depthwise conv of DilConv)
4     conv          weight   conv with groups == 1 (any dilation), ``nn.Linear``, MHA projections
5     msa           no       attention: softmax over a product of two data tensors (Swin,
                             MaxViT, hand-written), ``F.scaled_dot_product_attention``,
                             ``nn.MultiheadAttention`` -- whatever activation the MLP around it uses
6     cse           no       a product of two data tensors: squeeze-excitation gates (Hardswish as
                             in DeepNets, Sigmoid/Hardsigmoid as in torchvision), gated units
7     sum           no       add/sub of two or more different data tensors (residuals, cell nodes)
8     concat        no       cat/stack of two or more different data tensors
9     input         no       the network input (always node 0); also stands for constants
10    bias          bias     a conv/linear bias, its own node right after its weight
11    bn            w + b    batch norm: one node predicts weight (node_name) and bias (node_bias_name)
12    ln            w + b    layer norm (incl. torchvision's LayerNorm2d) and RMS norm
13    pos_enc       weight   additive positional embedding (DeepNets PosEnc, ViT pos_embedding, any
                             parameter added to tokens/features of its trailing shape); a source
                             node (no incoming edge), joined to the data by a ``sum`` node
14    glob_avg      no       global average pooling: adaptive avg pool to 1x1, mean over H, W (or
                             over the tokens of a (B, T, C) tensor)
15    cls_token     weight   extension. a learned token concatenated to the data (ViT class_token,
                             any parameter concatenated to tokens); a source node joined by a
                             ``concat`` node
16    layer_scale   weight   extension. a learned elementwise scale applied inline (ConvNeXt
                             layer_scale, Swin-V2 attention logit_scale, any parameter multiplied
                             channel- or element-wise with features)
17    rel_pos_bias  weight   extension. a relative-position bias table indexed into attention logits
                             (Swin, MaxViT); a source node joined by a ``sum`` node
18    gn            w + b    extension. group and instance norm (one node for weight and bias)
====  ============  =======  ==================================================================

Grouped and depthwise convs need no extension: the reference already maps them to ``sep_conv``
(``dil_conv`` when dilated). Activations, reshapes, dropout and slicing get no nodes (as in GHN-2).

The table
---------
Nodes are classified in exactly two ways, both declared here:

* :data:`FUNCTION_OPS`: a torch function (``F.conv2d``, ``F.linear``, ``F.batch_norm``,
  ``torch.cat``, ``Tensor.add`` ...) -> what the tracer does with it. Standard layers need no entry
  of their own: ``nn.Conv2d`` calls ``F.conv2d``, ``nn.LayerNorm`` calls ``F.layer_norm``, so a
  hand-written layer that calls the same functions is understood too.
* :data:`MODULE_KINDS` (built in) plus :func:`register_module` (yours): a module type -> the node
  kind of the parameters it uses *directly* in ``forward`` (``x + self.pos_embedding``,
  ``self.layer_scale * y``, ``self.table[index]``).

A parameter used directly by a module type that is in neither table is classified by its use, in
:data:`RAW_PARAM_USES` (:func:`raw_param_kind`): the kind of the torch function where it first meets
data (a tensor of the graph) and the shapes involved. Added to a token or feature tensor of the same
trailing shape: ``pos_enc``; concatenated to tokens along the token dimension: ``cls_token``;
multiplied channel-wise or element-wise without changing the data's shape: ``layer_scale``. A
parameter whose use fits none of these (an exponent, a matmul, a scalar factor, ...) is reported by
name, never silently dropped.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GraphError
from ..utils import lookup

__all__ = [
    "NodeType", "NODE_TYPES", "OP_NAMES", "OP_INDEX", "NUM_GHN2_OPS", "SOURCE_KINDS", "PARAM_KINDS",
    "CONV_KINDS", "NORM_KINDS", "op_index", "FunctionOp", "FUNCTION_OPS", "MODULE_KINDS",
    "register_module", "registered_modules", "module_param_kind", "RawParamUse", "RAW_PARAM_USES",
    "raw_param_kind",
]


@dataclass(frozen=True)
class NodeType:
    """One entry of the vocabulary.

    ``role`` says how a parameter node is wired: ``"op"`` (fed by its data input, like a conv),
    ``"source"`` (no incoming edge; joined to the data by a sum/concat node), or ``"free"``
    (parameter-free node).
    """

    index: int
    name: str
    role: str
    ghn2: bool
    doc: str

    @property
    def has_params(self) -> bool:
        return self.role != "free"


_TYPES = [
    # name, role, doc  -- GHN-2's 15 types, reference order
    ("max_pool", "free", "max pooling"),
    ("avg_pool", "free", "average pooling"),
    ("sep_conv", "op", "grouped conv, dilation 1"),
    ("dil_conv", "op", "grouped conv, dilation > 1"),
    ("conv", "op", "conv (groups 1) or linear weight"),
    ("msa", "free", "attention"),
    ("cse", "free", "multiplicative gate (squeeze-excitation)"),
    ("sum", "free", "sum of data tensors"),
    ("concat", "free", "concatenation of data tensors"),
    ("input", "free", "network input"),
    ("bias", "op", "conv/linear bias"),
    ("bn", "op", "batch norm weight + bias"),
    ("ln", "op", "layer/RMS norm weight + bias"),
    ("pos_enc", "source", "additive positional embedding"),
    ("glob_avg", "free", "global average pooling"),
    # ghn-nas extensions (appended: ids 0-14 stay GHN-2's)
    ("cls_token", "source", "learned class token"),
    ("layer_scale", "op", "learned elementwise scale"),
    ("rel_pos_bias", "source", "relative-position bias table"),
    ("gn", "op", "group/instance norm weight + bias"),
]
NUM_GHN2_OPS = 15
NODE_TYPES: tuple[NodeType, ...] = tuple(
    NodeType(i, name, role, i < NUM_GHN2_OPS, doc) for i, (name, role, doc) in enumerate(_TYPES))
OP_NAMES: tuple[str, ...] = tuple(t.name for t in NODE_TYPES)
OP_INDEX: Mapping[str, int] = MappingProxyType({t.name: t.index for t in NODE_TYPES})
SOURCE_KINDS = frozenset(t.name for t in NODE_TYPES if t.role == "source")
PARAM_KINDS = frozenset(t.name for t in NODE_TYPES if t.has_params)
CONV_KINDS = frozenset({"conv", "sep_conv", "dil_conv"})
NORM_KINDS = frozenset({"bn", "ln", "gn"})


def op_index(name: str) -> int:
    """Id of node type ``name``; an unknown name lists the known ones."""
    return lookup(OP_INDEX, name, "node type", GraphError)


# -- torch functions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FunctionOp:
    """What the tracer does with one torch function: ``handler`` (a method of the tracer) and,
    where the handler creates a node, its ``kind``."""

    handler: str
    kind: str | None = None


def _entries(handler: str, kind: str | None, *funcs) -> dict:
    return {f: FunctionOp(handler, kind) for f in funcs if f is not None}


def _opt(obj, name: str):
    return getattr(obj, name, None)


T = torch.Tensor
FUNCTION_OPS: Mapping = MappingProxyType({
    # layers with parameters: weight (+ bias) nodes; the conv kind follows groups and dilation
    **_entries("conv", "conv", F.conv1d, F.conv2d, F.conv3d),
    **_entries("conv_transpose", "conv", F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d),
    **_entries("linear", "conv", F.linear),
    **_entries("norm", "bn", F.batch_norm),
    **_entries("norm", "ln", F.layer_norm, _opt(F, "rms_norm")),
    **_entries("norm", "gn", F.group_norm, F.instance_norm),
    **_entries("mha", "msa", F.multi_head_attention_forward),
    # parameter-free nodes
    **_entries("pool", "max_pool", F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.max_pool1d, torch.max_pool2d,
               torch.max_pool3d, F.max_pool1d_with_indices, F.max_pool2d_with_indices, F.max_pool3d_with_indices),
    **_entries("pool", "avg_pool", F.avg_pool1d, F.avg_pool2d, F.avg_pool3d),
    **_entries("adaptive_pool", "avg_pool", F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d),
    **_entries("adaptive_pool", "max_pool", F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d),
    **_entries("mean", "glob_avg", torch.mean, T.mean),
    **_entries("merge", "sum", torch.add, T.add, T.add_, torch.sub, T.sub, T.sub_, _opt(torch, "subtract"),
               T.__radd__, T.__rsub__, _opt(torch, "rsub")),
    **_entries("merge", "cse", torch.mul, T.mul, T.mul_, _opt(torch, "multiply"), T.__rmul__),
    **_entries("cat", "concat", torch.cat, _opt(torch, "concat"), _opt(torch, "concatenate"), torch.stack),
    **_entries("softmax", "msa", F.softmax, torch.softmax, T.softmax),
    **_entries("matmul", None, torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__, torch.bmm, T.bmm, torch.einsum),
    **_entries("sdpa", "msa", F.scaled_dot_product_attention),
    # constants shaped like a tensor: the output carries no provenance
    **_entries("constant", None, T.new_zeros, T.new_ones, T.new_empty, T.new_full, T.new_tensor, torch.zeros_like,
               torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like, torch.randn_like,
               torch.randint_like),
    # no node, output has the shape of the first argument (computed without running the op on meta)
    **_entries("same_shape", None, F.relu, torch.relu, torch.relu_, T.relu, T.relu_, F.relu6, F.hardtanh,
               F.hardtanh_, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.mish, F.elu, F.selu, F.celu,
               F.leaky_relu, F.softplus, torch.sigmoid, T.sigmoid, T.sigmoid_, torch.tanh, T.tanh, F.sigmoid,
               F.tanh, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout),
})


# -- module types whose parameters are used directly in forward ------------------------------------

def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# Keyed by qualified class name so that this table imports neither torchvision nor ghn_core.deepnets.
# A value is one kind for every directly-used parameter of the module, or {parameter name: kind}.
MODULE_KINDS: Mapping[str, "str | Mapping[str, str]"] = MappingProxyType({
    "ghn_core.deepnets.ops.PosEnc": {"weight": "pos_enc"},
    "torchvision.models.vision_transformer.VisionTransformer": {"class_token": "cls_token"},
    "torchvision.models.vision_transformer.Encoder": {"pos_embedding": "pos_enc"},
    "torchvision.models.convnext.CNBlock": {"layer_scale": "layer_scale"},
    "torchvision.models.swin_transformer.ShiftedWindowAttention": {"relative_position_bias_table": "rel_pos_bias"},
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": {"logit_scale": "layer_scale"},
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": {"relative_position_bias_table": "rel_pos_bias"},
})

_user_kinds: dict[type, "str | Mapping[str, str]"] = {}
_user_lock = threading.Lock()


def _check_kinds(kind, what: str) -> "str | Mapping[str, str]":
    kinds = kind.values() if isinstance(kind, Mapping) else [kind]
    for k in kinds:
        if k not in OP_INDEX:
            op_index(k)  # raises with the known names
        if k not in PARAM_KINDS:
            raise GraphError(f"{what}: node kind {k!r} has no parameters; expected one of "
                             f"{', '.join(sorted(PARAM_KINDS))}")
    return MappingProxyType(dict(kind)) if isinstance(kind, Mapping) else kind


def register_module(module_type: type, kind: "str | Mapping[str, str]") -> None:
    """Declare the node kind of the parameters ``module_type`` uses directly in its ``forward``.

    ``kind`` is one node type for all of them (``register_module(MyScale, "layer_scale")``) or a
    mapping from parameter name to node type. Parameters passed to standard functions
    (``F.conv2d``, ``F.linear``, norms, attention) need no registration. Registering a type twice,
    or a type the built-in table already covers, raises :class:`GraphError`. For a registration
    that lasts one call only, pass ``module_kinds=`` to :meth:`Graph.from_module` instead.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise GraphError(f"expected an nn.Module subclass, got {module_type!r} instead")
    checked = _check_kinds(kind, f"register_module({module_type.__name__})")
    with _user_lock:
        if module_type in _user_kinds or _qualname(module_type) in MODULE_KINDS:
            raise GraphError(f"{_qualname(module_type)} is already registered (as "
                             f"{_user_kinds.get(module_type) or MODULE_KINDS.get(_qualname(module_type))!r})")
        _user_kinds[module_type] = checked


def registered_modules() -> dict[str, "str | Mapping[str, str]"]:
    """Every module type with a node kind: the built-in table plus :func:`register_module` calls."""
    return {**MODULE_KINDS, **{_qualname(t): k for t, k in _user_kinds.items()}}


def module_param_kind(module: nn.Module, param: str,
                      overrides: "Mapping[type, str | Mapping[str, str]] | None" = None) -> str | None:
    """Node kind of ``module``'s parameter ``param`` used directly in forward, or None if unknown.

    Looks along the module's MRO: per-call ``overrides`` first, then user registrations, then the
    built-in :data:`MODULE_KINDS`.
    """
    for cls in type(module).__mro__:
        if cls is nn.Module:
            break
        kind = None
        if overrides and cls in overrides:
            kind = overrides[cls]
        elif cls in _user_kinds:
            kind = _user_kinds[cls]
        else:
            kind = MODULE_KINDS.get(_qualname(cls))
        if kind is not None:
            return kind.get(param) if isinstance(kind, Mapping) else kind
    return None


def check_overrides(overrides) -> dict:
    """Validate a per-call ``module_kinds`` mapping (same rules as :func:`register_module`)."""
    out = {}
    for t, kind in (overrides or {}).items():
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise GraphError(f"module_kinds: expected nn.Module subclasses as keys, got {t!r} instead")
        out[t] = _check_kinds(kind, f"module_kinds[{t.__name__}]")
    return out


# -- parameters of unregistered modules, classified by their use ------------------------------------

def _added_positional(param: tuple[int, ...], data: tuple[int, ...], out: tuple[int, ...], dim: int | None) -> bool:
    """(1, T, D) + (B, T, D), (T, D) + (B, T, D), (1, C, H, W) + (B, C, H, W): the parameter covers
    every non-batch dimension of a token or feature tensor, which keeps its shape."""
    n = len(data) - 1
    return len(data) >= 3 and tuple(out) == tuple(data) and len(param) >= n and tuple(param[-n:]) == tuple(data[1:])


def _concatenated_token(param: tuple[int, ...], data: tuple[int, ...], out: tuple[int, ...], dim: int | None) -> bool:
    """cat([(B, k, D), (B, T, D)], dim=1): learned tokens joined to a (B, T, D) token tensor."""
    return (len(data) == 3 and len(param) == 3 and len(out) == 3 and dim is not None and dim % 3 == 1
            and param[2] == data[2])


def _scaled(param: tuple[int, ...], data: tuple[int, ...], out: tuple[int, ...], dim: int | None) -> bool:
    """(D,) * (B, T, D), (C, 1, 1) * (B, C, H, W), (T, D) * (B, T, D): a factor per channel or per
    element that broadcasts into the data without changing its shape (a scalar is neither)."""
    if tuple(out) != tuple(data) or not 1 <= len(param) <= len(data) or all(p == 1 for p in param):
        return False
    return all(p in (1, d) for p, d in zip(reversed(param), reversed(data)))


@dataclass(frozen=True)
class RawParamUse:
    """How a parameter of an unregistered module is recognised: where it meets data (``use``, the
    :data:`FUNCTION_OPS` kind of the function), the shapes that must fit (``fits(param, data, out,
    dim)``, shapes as the tensors have them at that call), and the node ``kind`` it then gets."""

    use: str
    kind: str
    fits: Callable[[tuple, tuple, tuple, "int | None"], bool]
    doc: str


RAW_PARAM_USES: Mapping[str, RawParamUse] = MappingProxyType({u.use: u for u in (
    RawParamUse("sum", "pos_enc", _added_positional,
                "added to a token/feature tensor of the same trailing shape (positional embedding)"),
    RawParamUse("concat", "cls_token", _concatenated_token,
                "concatenated to (B, T, D) tokens along the token dimension (class token)"),
    RawParamUse("cse", "layer_scale", _scaled,
                "multiplied channel-wise or element-wise with a feature tensor (layer scale)"),
)})


def raw_param_kind(use: str, param: tuple[int, ...], data: tuple[int, ...], out: tuple[int, ...], dim: int | None = None) -> str | None:
    """Node kind of a parameter of an unregistered module that meets data in a function of
    :data:`FUNCTION_OPS` kind ``use``, or None when the use fits no entry of :data:`RAW_PARAM_USES`.

    ``param``, ``data`` and ``out``: the shapes of the parameter as it meets the data (after any
    ``expand``/slicing), of the data tensor and of the result; ``dim``: the concatenation dimension.
    """
    rule = RAW_PARAM_USES.get(use)
    if rule is None or not rule.fits(tuple(param), tuple(data), tuple(out), dim):
        return None
    return rule.kind
