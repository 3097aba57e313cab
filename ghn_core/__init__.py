"""ghn_core: GHN-2 graph hypernetworks, DeepNets-1M, and the image data they train on."""
from .errors import ArchitectureError, DataError, GhnNasError, GraphError, StoreError

__version__ = "0.1.0"
__all__ = ["GhnNasError", "DataError", "ArchitectureError", "GraphError", "StoreError", "__version__"]
