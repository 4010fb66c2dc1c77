"""A tiny iris-like classifier, trained in the test, saved as ONNX and as skops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Trained:
    """A fitted LogisticRegression and a few rows to ask it about."""

    estimator: Any
    rows: np.ndarray  # float32, shape (n, 4)
    inputs: np.ndarray  # the training inputs, float64, shape (120, 4)


def train(seed: int = 0, c: float = 1.0) -> Trained:
    """Three classes over four features, like iris, from a fixed seed."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
    x = np.concatenate([c_ + rng.normal(scale=0.4, size=(40, 4)) for c_ in centers])
    y = np.repeat([0, 1, 2], 40)
    est = LogisticRegression(C=c, max_iter=500).fit(x, y)
    return Trained(est, x[::17].astype(np.float32), x)


def write_onnx(trained: Trained, path: Path) -> Path:
    """The classifier as ONNX (input ``X`` FP32 [-1, 4]; outputs ``label``,
    ``probabilities``), without ZipMap so every output is a tensor."""
    from skl2onnx import to_onnx

    onx = to_onnx(trained.estimator, trained.rows[:1], options={"zipmap": False}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path


def write_skops(trained: Trained, path: Path) -> Path:
    """The classifier in skops' format (no pickle)."""
    import skops.io as sio

    sio.dump(trained.estimator, path)
    return path


def onnx_predict(path: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime called directly: what the server must answer."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], {"X": rows})
    return {"label": label, "probabilities": proba}
