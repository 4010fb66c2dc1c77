"""scikit-learn estimators saved as pickles (``pickle``, ``joblib``), served
ONLY under an admin's recorded ``pickle`` exception on the version.

Unpickling runs whatever code the file names, so this flavor is not in
:data:`~modelyard.serving.flavors.FLAVORS`: :func:`~modelyard.serving.flavors.choose_flavor`
picks it only when the registry says the exact version being loaded carries
the exception (audited: who granted it, when and why). The file's bytes are
the ones the registry verified by digest, and a ready version's files never
change, so the exception covers exactly what was reviewed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from modelyard.serving.flavors import PICKLE_SUFFIXES, pick_file, unservable
from modelyard.serving.flavors.skops import SkopsPredictor, estimator_predictor
from modelyard.serving.tensors import Signature

NAME = "pickle"
SUFFIXES = PICKLE_SUFFIXES
REQUIREMENTS = ("numpy", "scikit-learn")
OFFLOAD = True
"""Any estimator can hide in a pickle, slow ones too: infer off the event loop."""


def load(
    files: dict[str, Path], signature: Signature | None, *, threads: int = 1
) -> SkopsPredictor:
    """Unpickle the version's one pickle file (joblib's format for ``.joblib``)."""
    del threads
    path = pick_file(files, SUFFIXES, NAME)
    try:
        if path.suffix.lower() == ".joblib":
            import joblib

            estimator = joblib.load(path)
        else:
            with path.open("rb") as f:
                estimator = pickle.load(f)
    except Exception as exc:  # a damaged or foreign pickle raises anything
        raise unservable(f"cannot unpickle {path.name}: {exc}", file=path.name) from None
    return estimator_predictor(estimator, signature, path.name)
