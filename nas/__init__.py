"""nas: architecture search on GHN proxies: spaces, proxies, predictors, objectives and the search."""
from .finalize import finalize
from .objectives import OBJECTIVES, resolve_objectives
from .predictors import fit_predictor, make_predictor, rank_correlations
from .proxies import PROXIES, ProxyContext, compute, list_proxies
from .report import write_report
from .search import SearchConfig, run_search
from .space import CustomSpace, DeepNetsSpace, NB201Space, get_space

__all__ = ["DeepNetsSpace", "NB201Space", "CustomSpace", "get_space", "ProxyContext", "PROXIES", "compute",
           "list_proxies", "make_predictor", "fit_predictor", "rank_correlations", "OBJECTIVES",
           "resolve_objectives", "SearchConfig", "run_search", "finalize", "write_report"]
