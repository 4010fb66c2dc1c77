"""Flavors: how a model format is loaded and called. One module per format.

Each flavor module defines::

    NAME: str                       # the version ``format`` it serves ("onnx")
    SUFFIXES: tuple[str, ...]       # file suffixes that identify it (".onnx",)
    REQUIREMENTS: tuple[str, ...]   # its runtime's packages (pinned by ``modelyard build``)
    OFFLOAD: bool                   # optional: infer on a worker thread (slow models)
    BF16: bool                      # optional: takes and gives BF16 tensors (uint16 bits)
    def load(files: dict[str, Path], signature: Signature | None) -> Predictor

and is listed in :data:`FLAVORS`; nothing else changes to add one. A flavor is
picked by the version's ``format`` when set, else by its files' suffixes.
Pickle files are not loaded (unpickling runs arbitrary code): a version
that only has pickles is refused with a message saying what to push instead,
unless an admin recorded an audited exception on that version bound to its
pickle files' digests (``modelyard version allow-pickle``): the loader then
grants ``pickle`` and the :mod:`~modelyard.serving.flavors.pickled` flavor
loads the scikit-learn estimator. Format ``python`` (the version's own code)
is chosen only when the model's policy allows custom code (``exceptions``
holds ``custom_code``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelyard.domain.errors import InvalidInput
from modelyard.domain.pickles import ALLOW_PICKLE_COMMAND, PICKLE_FORMATS, PICKLE_SUFFIXES
from modelyard.serving.tensors import Signature

FLAVORS: tuple[str, ...] = ("onnx", "skops")
"""Modules of this package, one per served format."""


class Predictor(Protocol):
    """A loaded model: its signature, and a call from named arrays to named arrays."""

    signature: Signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on inputs already checked against :attr:`signature`."""
        ...


class FlavorModule(Protocol):
    """What a flavor module provides (see the module docstring)."""

    NAME: str
    SUFFIXES: tuple[str, ...]
    REQUIREMENTS: tuple[str, ...]

    def load(
        self, files: dict[str, Path], signature: Signature | None, *, threads: int = 1
    ) -> Predictor: ...


def flavor_module(name: str) -> FlavorModule:
    """The flavor module called ``name`` (imported on first use: onnxruntime and
    scikit-learn are heavy, and a server loads only what it serves)."""
    module: Any = importlib.import_module(f"{__name__}.{name}")
    return module  # type: ignore[no-any-return]


def unservable(message: str, **details: Any) -> InvalidInput:
    """The error for a version ``modelyard serve`` will not load."""
    return InvalidInput(message, code="UNSERVABLE_VERSION", details=details)


PICKLE_ADVICE = (
    "push the model as skops (skops.io.dump) or ONNX, or, for bytes an admin "
    "vouches for, an admin of the namespace can record an audited exception on this "
    f"version: {ALLOW_PICKLE_COMMAND}"
)


def is_pickle(fmt: str | None, paths: list[str]) -> bool:
    """True if a version of format ``fmt`` with files ``paths`` can only be
    served by unpickling: a pickle format, or pickles and no other known model file."""
    wanted = (fmt or "").lower()
    if wanted in PICKLE_FORMATS:
        return True
    if wanted:
        return False
    lowered = [p.lower() for p in paths]
    if any(p.endswith(flavor_module(n).SUFFIXES) for n in FLAVORS for p in lowered):
        return False
    return any(p.endswith(PICKLE_SUFFIXES) for p in lowered)


def choose_flavor(
    fmt: str | None, paths: list[str], exceptions: frozenset[str] = frozenset()
) -> FlavorModule:
    """The flavor for a version of format ``fmt`` holding files ``paths``.

    Raises ``UNSERVABLE_VERSION`` for a pickle (by format or when pickles are
    all the version has) unless ``exceptions`` holds ``pickle`` (the loader
    checked the version's pickle exception), for format ``python`` unless ``exceptions`` holds
    ``custom_code`` (the model's policy allows it), or when no flavor knows
    the format or any file.
    """
    lowered = [p.lower() for p in paths]
    wanted = (fmt or "").lower()
    if wanted == "python":
        if "custom_code" in exceptions:
            return flavor_module("python")
        raise unservable(
            "format 'python' runs the version's own code, which the model server does only "
            "when the namespace's production policy sets allow_custom_code: true "
            "(modelyard policy set NAMESPACE ...)",
            format=fmt,
        )
    if is_pickle(fmt, paths):
        if "pickle" in exceptions:
            return flavor_module("pickled")
        if wanted in PICKLE_FORMATS:
            raise unservable(
                f"format {fmt!r} is a pickle, and modelyard serve does not unpickle without an "
                f"admin's exception (loading a pickle runs arbitrary code): {PICKLE_ADVICE}",
                format=fmt,
            )
        raise unservable(
            "this version holds only pickle files, and modelyard serve does not unpickle "
            "without an admin's exception (loading a pickle runs arbitrary code): "
            f"{PICKLE_ADVICE}",
            files=paths,
        )
    for name in FLAVORS:
        module = flavor_module(name)
        if wanted == module.NAME:
            return module
    if wanted:
        raise unservable(
            f"no flavor serves format {fmt!r} (served: {', '.join(FLAVORS)})", format=fmt
        )
    for name in FLAVORS:
        module = flavor_module(name)
        if any(p.endswith(module.SUFFIXES) for p in lowered):
            return module
    raise unservable(
        "no flavor recognizes this version: set its format "
        f"({', '.join(FLAVORS)}) or push a file with a known suffix",
        files=paths,
    )


def pick_file(files: dict[str, Path], suffixes: tuple[str, ...], flavor: str) -> Path:
    """The one file of ``files`` with one of ``suffixes``; a clear error when
    there is none or more than one (which would make the choice a guess)."""
    found = sorted(p for p in files if p.lower().endswith(suffixes))
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise unservable(
            f"the {flavor} flavor needs exactly one {'/'.join(suffixes)} file; "
            f"this version has {what}",
            files=sorted(files),
        )
    return files[found[0]]
