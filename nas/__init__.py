"""nas: architecture search on GHN proxies.

Modules: ``space`` (search spaces), ``proxies``, ``predictors``, ``objectives``, and the command-line
jobs ``search``, ``label``, ``scorecard`` (run with ``python -m nas.<job>``; import them directly,
e.g. ``from nas.search import run_search``), with ``finalize`` and ``report`` behind ``search``.
``load_architecture(path)`` turns an architecture file a search wrote back into its network.
"""
from .objectives import OBJECTIVES, resolve_objectives
from .proxies import PROXIES, ProxyContext, compute, list_proxies
from .space import CustomSpace, DeepNetsSpace, NB201Space, get_space, load_architecture

__all__ = ["DeepNetsSpace", "NB201Space", "CustomSpace", "get_space", "load_architecture", "ProxyContext", "PROXIES",
           "compute", "list_proxies", "make_predictor", "fit_predictor", "rank_correlations", "OBJECTIVES",
           "resolve_objectives"]


def __getattr__(name: str):
    # nas.predictors is also a command (python -m nas.predictors): imported on first use, so that
    # running it does not find the module already imported by the package.
    if name in ("make_predictor", "fit_predictor", "rank_correlations"):
        from . import predictors

        return getattr(predictors, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
