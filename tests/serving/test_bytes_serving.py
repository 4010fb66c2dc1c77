"""BYTES tensors over OIP v2 (issue 12): a scikit-learn classifier with text
labels, pushed as skops, served by a real process and called with
tritonclient, which sends and reads BYTES in the binary extension."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from modelyard.client import Registry
from tests.conftest_server import stop_server
from tests.serving.models import train
from tests.serving.servers import start_serving


def test_text_labels_come_back_as_bytes(live_server: str, tmp_path: Path) -> None:
    trained = train(0)
    x = trained.rows.astype(np.float64)
    species = np.array(["setosa", "versicolor", "virginica"])
    est = LogisticRegression(max_iter=500).fit(
        np.concatenate([x + i for i in range(3)]), np.repeat(species, len(x))
    )
    sio.dump(est, tmp_path / "species.skops")
    name = f"species-{uuid.uuid4().hex[:8]}"
    with Registry(live_server, cache_dir=tmp_path / "sdk") as reg:
        reg.push(name, [tmp_path / "species.skops"])
    proc, url = start_serving(live_server, [f"{name}/1"], tmp_path / "serve")
    try:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        try:
            meta = client.get_model_metadata(name)
            assert {o["name"]: o["datatype"] for o in meta["outputs"]}["label"] == "BYTES"
            inp = httpclient.InferInput("input", list(x.shape), "FP64")
            inp.set_data_from_numpy(x)
            for binary in (True, False):
                out = httpclient.InferRequestedOutput("label", binary_data=binary)
                got = client.infer(name, [inp], outputs=[out]).as_numpy("label")
                assert [g.decode() if isinstance(g, bytes) else g for g in got] == (
                    est.predict(x).tolist()
                )
        finally:
            client.close()
    finally:
        stop_server(proc)
