"""A version's own Python code as its model (format ``python``), served ONLY
when the model's policy allows custom code (``allow_custom_code``, granted by
the namespace policy).

The version holds ``entrypoint.py`` (and whatever files it reads). The
module is imported from the verified file and must define::

    def load(files: dict[str, Path], signature: Signature) -> object

returning an object with ``predict(inputs: dict[str, ndarray]) -> dict[str,
ndarray]``. ``load`` must read every file it needs before it returns (the
pulled copies are removed once the version is loaded). The version must
declare its signature: requests are checked against it before the code
runs. This runs arbitrary code by design, in the model server's process and
with its rights: that is why only a namespace admin can allow it, and why
:func:`~modelyard.serving.flavors.choose_flavor` never picks it otherwise.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.serving.flavors import unservable
from modelyard.serving.tensors import Signature

NAME = "python"
SUFFIXES = (".py",)
REQUIREMENTS = ("numpy",)
OFFLOAD = True
"""Unknown code may be slow: infer off the event loop."""
ENTRYPOINT = "entrypoint.py"

_loaded = itertools.count()


class CustomPredictor:
    """The entrypoint's model behind the version's declared signature."""

    def __init__(self, model: Any, signature: Signature) -> None:
        self._predict = model.predict
        self.signature = signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The entrypoint's ``predict``, its answers as arrays."""
        return {k: np.asarray(v) for k, v in self._predict(inputs).items()}


def load(
    files: dict[str, Path], signature: Signature | None, *, threads: int = 1
) -> CustomPredictor:
    """Import ``entrypoint.py`` and call its ``load``."""
    del threads
    if ENTRYPOINT not in files:
        raise unservable(f"a python version needs an {ENTRYPOINT} at its root", files=sorted(files))
    if signature is None:
        raise unservable("a python version must declare its signature (inputs and outputs)")
    # A fresh module name per load: two versions never share module state.
    spec = importlib.util.spec_from_file_location(
        f"modelyard_entrypoint_{next(_loaded)}", files[ENTRYPOINT]
    )
    if spec is None or spec.loader is None:
        raise unservable(f"cannot import {ENTRYPOINT}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        model = module.load(files, signature)
    except Exception as exc:  # the version's own code: anything can go wrong
        raise unservable(f"{ENTRYPOINT} failed to load: {type(exc).__name__}: {exc}") from None
    if not callable(getattr(model, "predict", None)):
        raise unservable(f"{ENTRYPOINT}'s load() returned an object without predict()")
    return CustomPredictor(model, signature)
