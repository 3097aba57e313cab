"""DeepNets-1M: the architecture space GHN-2 learns from (genotypes, sampler, networks, store)."""
from .genotype import Architecture, CellPlan, Genotype, cell_plan
from .network import Network, count_params, net_layout
from .ops import PRIMITIVES, OPS, get_op
from .generate import generate_split
from .graph import architecture_graph
from .predefined import VIT_ARCH, predefined_nets
from .store import DeepNets1M, NetRecord
from .sampler import SPLITS, SplitSpec, get_split, rejection_reason, sample_architecture, sample_genotype, sample_width

__all__ = [
    "Architecture", "Genotype", "CellPlan", "cell_plan", "Network", "count_params", "net_layout",
    "OPS", "PRIMITIVES", "get_op", "SPLITS", "SplitSpec", "get_split", "sample_architecture", "sample_genotype",
    "rejection_reason", "sample_width", "generate_split", "DeepNets1M", "NetRecord", "VIT_ARCH", "predefined_nets",
    "architecture_graph",
]
