"""The MLflow-compatible door: MLflow's REST API onto the same service layer as REST v1."""
