"""scikit-learn estimators saved as pickles (``joblib.dump``, ``pickle.dump``),
served ONLY under an admin's audited exception on the version (issue 12).

Unpickling runs whatever code the file names, in the model server's process
and with its rights. :func:`~modelyard.serving.flavors.choose_flavor` picks
this flavor only when the loader has checked that the version carries a
pickle exception bound to exactly its pickle files' digests, and the loader
hashes the pulled files again against those digests before calling
:func:`load`. This module (with the loader's check) is the only place in
modelyard that unpickles; the registry server never does (a source check in
the tests holds every other module to it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.serving.flavors import pick_file, unservable
from modelyard.serving.flavors.skops import SkopsPredictor, estimator_predictor
from modelyard.serving.tensors import Signature

NAME = "pickle"
SUFFIXES = (".pkl", ".pickle", ".joblib")
REQUIREMENTS = ("numpy", "scikit-learn", "joblib")


def load(
    files: dict[str, Path], signature: Signature | None, *, threads: int = 1
) -> SkopsPredictor:
    """Unpickle the version's one pickle file with joblib (which reads plain
    pickles too) and serve the estimator as the skops flavor does."""
    import joblib

    del threads
    path = pick_file(files, SUFFIXES, NAME)
    try:
        estimator: Any = joblib.load(path)
    except Exception as exc:  # a damaged file, a class this runtime lacks
        raise unservable(
            f"cannot unpickle {path.name}: {type(exc).__name__}: {exc}", file=path.name
        ) from None
    module = type(estimator).__module__ or ""
    if module.split(".", 1)[0] != "sklearn":
        raise unservable(
            f"{path.name} holds a {module}.{type(estimator).__name__}; the pickle flavor "
            "serves scikit-learn estimators only",
            file=path.name,
        )
    return estimator_predictor(estimator, signature, path.name)
