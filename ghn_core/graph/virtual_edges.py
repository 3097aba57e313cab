"""Virtual edges (GHN-2, §2 of the reference): directed shortest paths of up to ``s_max`` hops.

A virtual edge u -> v of weight k stands for a shortest directed path of k > 1 real edges; the
GatedGNN adds a message from u to v scaled by 1/k. Distances come from scipy's compiled Dijkstra
(unweighted, directed, cut off at ``s_max``) over the sparse adjacency; nothing loops over pairs
in Python.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from ..errors import GraphError

__all__ = ["shortest_path_edges", "DEFAULT_S_MAX"]

DEFAULT_S_MAX = 50


def shortest_path_edges(edge_index: np.ndarray, num_nodes: int, s_max: int = DEFAULT_S_MAX
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Real plus virtual edges of a DAG.

    Args:
        edge_index: (2, E) real edges (src, dst), no duplicates.
        num_nodes: N.
        s_max: longest virtual edge kept; 1 keeps only the real edges.

    Returns:
        ``(edge_index, edge_dist)``: (2, E') int64 sorted by (src, dst), and (E',) int64 with
        1 for a real edge and k in 2..s_max for a virtual edge of k hops.
    """
    if not isinstance(s_max, (int, np.integer)) or s_max < 1:
        raise GraphError(f"expected an int s_max >= 1 (1: no virtual edges), got {s_max!r} instead")
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    if s_max == 1 or edge_index.shape[1] == 0:
        order = np.lexsort((edge_index[1], edge_index[0]))
        real = edge_index[:, order]
        return real, np.ones(real.shape[1], dtype=np.int64)
    adj = csr_matrix((np.ones(edge_index.shape[1], dtype=np.float64), (edge_index[0], edge_index[1])),
                     shape=(num_nodes, num_nodes))
    dist = dijkstra(adj, directed=True, unweighted=True, limit=float(s_max))   # (N, N), inf beyond s_max
    src, dst = np.nonzero((dist >= 1) & (dist <= s_max))                        # row-major: sorted by (src, dst)
    return np.stack([src, dst]).astype(np.int64), dist[src, dst].astype(np.int64)
