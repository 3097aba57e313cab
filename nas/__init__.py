"""nas: architecture search on GHN proxies (search spaces so far; proxies and search are next)."""
from .space import CustomSpace, DeepNetsSpace, NB201Space, get_space

__all__ = ["DeepNetsSpace", "NB201Space", "CustomSpace", "get_space"]
