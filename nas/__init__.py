"""nas: architecture search on GHN proxies (search spaces and proxies so far; the search is next)."""
from .proxies import PROXIES, ProxyContext, compute, list_proxies
from .space import CustomSpace, DeepNetsSpace, NB201Space, get_space

__all__ = ["DeepNetsSpace", "NB201Space", "CustomSpace", "get_space", "ProxyContext", "PROXIES", "compute",
           "list_proxies"]
