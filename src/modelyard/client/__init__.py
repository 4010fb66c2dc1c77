"""Python SDK: one interface, remote (HTTP) or embedded (in-process service).

>>> reg = Registry("http://127.0.0.1:8080")      # or Registry("./.modelyard")
>>> v = reg.push("fraud", "model_dir/", framework="onnx", metrics={"auc": 0.93})
>>> reg.pull("fraud@latest", "out/")
"""

from modelyard.client.reference_stats import compute_reference_stats
from modelyard.client.registry import ModelInfo, Registry, VersionInfo

__all__ = ["ModelInfo", "Registry", "VersionInfo", "compute_reference_stats"]
