"""nas: architecture search on GHN proxies (spaces, proxies and predictors so far; the search is next)."""
from .predictors import fit_predictor, make_predictor, rank_correlations
from .proxies import PROXIES, ProxyContext, compute, list_proxies
from .space import CustomSpace, DeepNetsSpace, NB201Space, get_space

__all__ = ["DeepNetsSpace", "NB201Space", "CustomSpace", "get_space", "ProxyContext", "PROXIES", "compute",
           "list_proxies", "make_predictor", "fit_predictor", "rank_correlations"]
