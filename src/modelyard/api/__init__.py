"""HTTP: native REST v1 and (later) the MLflow-compatible API. Thin: parse, call, shape."""
