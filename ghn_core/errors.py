"""Exceptions of ghn-nas: one base class, one subclass per kind of user mistake.

Each subclass also derives from the builtin a caller would naturally catch, so
``except ValueError`` keeps working for code that does not know ghn-nas.
"""
from __future__ import annotations


class GhnNasError(Exception):
    """Base class of every error ghn-nas raises on purpose."""


class DataError(GhnNasError, FileNotFoundError):
    """An image-data folder is missing or not in the expected layout."""


class ArchitectureError(GhnNasError, ValueError):
    """A genotype or architecture record is malformed or cannot be built."""


class StoreError(GhnNasError, ValueError):
    """A DeepNets-1M store file is missing, corrupt, or would be overwritten."""


class GraphError(GhnNasError, ValueError):
    """A module cannot be turned into a computational graph."""


class DisconnectedGraphError(GraphError):
    """The network's output does not depend on its input (e.g. an NB201 cell of 'none' edges)."""


class UnsupportedModuleError(GraphError):
    """A module type the graph builder has no node kind for."""


class CheckpointError(GhnNasError, ValueError):
    """A file is not a GHN checkpoint, or is corrupt."""


class ClassesWarning(UserWarning):
    """A model whose number of classes differs from the GHN's: its predicted classifier means nothing."""


class ColumnError(GhnNasError, KeyError):
    """A labelled table has no column (property) of that name. A ``KeyError``, so tables stay mappings."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
