"""Small helpers shared across ghn_core: devices, seeds, named-table lookups, meta-device models."""
from __future__ import annotations

import contextlib
import difflib
import sys
import warnings
from typing import Iterator, Mapping, TypeVar

import torch
from torch import nn

V = TypeVar("V")


def lookup(table: Mapping[str, V], name: str, what: str, error: type[Exception] = ValueError, extra: str = "") -> V:
    """``table[name]``; an unknown name raises ``error`` listing the known names and the closest one."""
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise error(f"unknown {what} {name!r}; known: {', '.join(table)}{extra}.{hint}") from None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` (CUDA when present, else CPU) or any torch device spec into a device, checking
    that this machine has it (a ``ValueError`` naming the device otherwise, before any work is done)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, torch.device):
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"expected a device such as 'auto', 'cpu' or 'cuda:0', got {device!r} instead") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use 'cpu' or 'auto'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA device(s), "
                             f"expected cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available on this machine; use 'cpu' or 'auto'")
    return device


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed``; seeds are required, never None."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"expected an int seed, got {seed!r} instead")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts that must be at least 1 (trials, images, workers)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse ``type=`` for counts where 0 means none (or, where the help says so, all)."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} instead") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value} instead")
    return value


# OSErrors a user's path causes (a typo, a folder given for a file, no permission), as opposed to a
# full disk or a broken filesystem, which keep their traceback.
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def user_message(err: BaseException) -> str:
    """One line for a user mistake: the error's message (its first line; an ``OSError`` as
    "what: path"), without the advice and context lines some libraries append."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}"
    else:
        text = str(err) or type(err).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[0] + (" (--debug shows the rest)" if len(lines) > 1 else "")


@contextlib.contextmanager
def user_errors(debug: bool = False, interrupted: str = "nothing half-written was kept") -> Iterator[None]:
    """For command lines: a user mistake (a ``GhnNasError``, ``ValueError``, or a missing, misplaced or
    unreadable file) prints one line and exits with status 2; ``debug=True`` (``--debug``) shows the
    traceback instead. Ctrl-C prints ``interrupted: <interrupted>`` (what the command kept, and how to
    go on) and exits with status 130, in every phase of the command."""
    from .errors import GhnNasError

    try:
        yield
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        raise SystemExit(130) from None
    except (GhnNasError, ValueError, *_PATH_ERRORS) as err:
        if debug:
            raise
        print(f"error: {user_message(err)}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Move parameters and buffers to meta as modules register them (for builders that compute with
    real tensors, such as RegNet's, and so cannot run inside ``torch.device('meta')``)."""
    reg_p, reg_b = nn.Module.register_parameter, nn.Module.register_buffer

    def register_parameter(self, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), param.requires_grad)
        reg_p(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        reg_b(self, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = reg_p, reg_b


def torchvision_on_meta(name: str, **kwargs) -> nn.Module:
    """A torchvision classifier with every tensor on the meta device (no memory, no init cost)."""
    import torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init-weights notice
        try:
            with torch.device("meta"):
                return torchvision.models.get_model(name, weights=None, **kwargs)
        except (NotImplementedError, RuntimeError):
            with _parameters_on_meta():
                return torchvision.models.get_model(name, weights=None, **kwargs)
