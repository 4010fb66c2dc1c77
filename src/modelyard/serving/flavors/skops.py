"""scikit-learn estimators saved with skops (``skops.io.dump``), never pickle.

skops loads only types it trusts by default (scikit-learn's own, NumPy's,
SciPy's); a file that needs anything else is refused with the list of those
types, since trusting them would let the file run their code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.serving.flavors import pick_file, unservable
from modelyard.serving.tensors import Signature, TensorSpec, oip_of_numpy

NAME = "skops"
SUFFIXES = (".skops",)
REQUIREMENTS = ("numpy", "scikit-learn", "skops")

# Output tensor names the flavor knows, and the estimator method each calls
# (public: the converter maps a signature's outputs the same way).
OUTPUT_METHODS = {
    "label": "predict",
    "predict": "predict",
    "probabilities": "predict_proba",
    "predict_proba": "predict_proba",
}


class SkopsPredictor:
    """An estimator with one 2-D input; outputs ``label`` and, for classifiers,
    ``probabilities`` (or the names the signature gives them)."""

    def __init__(self, estimator: Any, signature: Signature) -> None:
        self.estimator = estimator
        self._input = signature.inputs[0].name
        self._calls = [
            (s.name, getattr(estimator, OUTPUT_METHODS[s.name])) for s in signature.outputs
        ]
        self.signature = signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call each output's estimator method on the one input."""
        x = inputs[self._input]
        return {name: np.asarray(call(x)) for name, call in self._calls}


def _label_datatype(estimator: Any) -> str | None:
    """The OIP datatype of ``predict``'s answer: a classifier's class dtype
    (text labels are BYTES; None when it has no OIP tensor type), a
    regressor's FP64."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return "FP64"
    values = np.asarray(classes)
    if values.dtype == object and all(isinstance(c, str) for c in values.tolist()):
        return "BYTES"
    return oip_of_numpy(values.dtype)


def _own_signature(estimator: Any) -> Signature:
    n = getattr(estimator, "n_features_in_", None)
    inputs = (TensorSpec("input", "FP64", (-1, n if isinstance(n, int) else -1)),)
    outputs = []
    classes = getattr(estimator, "classes_", None)
    label = _label_datatype(estimator)
    if label is not None:
        outputs.append(TensorSpec("label", label, (-1,)))
    if hasattr(estimator, "predict_proba") and classes is not None:
        outputs.append(TensorSpec("probabilities", "FP64", (-1, len(classes))))
    return Signature(inputs, tuple(outputs))


def load(
    files: dict[str, Path],
    signature: Signature | None,
    *,
    threads: int = 1,
    trusted: Sequence[str] = (),
) -> SkopsPredictor:
    """Load the version's one ``.skops`` file with skops' default trust only,
    plus the type names the caller lists in ``trusted`` (the server lists
    none; ``modelyard convert --trust`` lets a person vouch for more)."""
    import skops.io as sio

    del threads  # scikit-learn's small predictors run single-threaded anyway
    path = pick_file(files, SUFFIXES, NAME)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises plain exceptions for a damaged archive
        raise unservable(f"skops cannot read {path.name}: {exc}", file=path.name) from None
    untrusted = [t for t in untrusted if t not in set(trusted)]
    if untrusted:
        raise unservable(
            f"{path.name} needs types skops does not trust by default ({', '.join(untrusted)}); "
            "loading them could run their code, so the version is not loaded",
            untrusted=list(untrusted),
        )
    try:
        estimator = sio.load(path, trusted=list(trusted) or None)
    except Exception as exc:
        raise unservable(f"skops cannot load {path.name}: {exc}", file=path.name) from None
    return estimator_predictor(estimator, signature, path.name)


def estimator_predictor(estimator: Any, signature: Signature | None, file: str) -> SkopsPredictor:
    """A loaded scikit-learn estimator behind the signature its version declares
    (or the one read from the estimator)."""
    if not hasattr(estimator, "predict"):
        raise unservable(f"{file} holds a {type(estimator).__name__}, which cannot predict")
    own = _own_signature(estimator)
    if signature is None:
        if not own.outputs:
            raise _string_labels()
        return SkopsPredictor(estimator, own)
    if len(signature.inputs) != 1:
        raise unservable("a scikit-learn estimator takes exactly one input tensor")
    outputs = signature.outputs or own.outputs
    for s in outputs:
        method = OUTPUT_METHODS.get(s.name)
        if method is None or not hasattr(estimator, method):
            known = sorted(n for n, m in OUTPUT_METHODS.items() if hasattr(estimator, m))
            raise unservable(
                f"output {s.name!r} is not one the skops flavor provides ({', '.join(known)})",
                output=s.name,
            )
        if OUTPUT_METHODS[s.name] == "predict" and _label_datatype(estimator) is None:
            raise _string_labels()
    return SkopsPredictor(estimator, Signature(signature.inputs, outputs))


def _string_labels() -> Exception:
    return unservable(
        "this classifier's labels are neither numbers nor text, which no OIP tensor "
        "carries: encode the labels as integers or strings, or declare only a "
        "'probabilities' output in the version's signature"
    )
