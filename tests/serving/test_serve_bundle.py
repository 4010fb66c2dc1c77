"""Serving a whole bundle: every role under its own name, ready only when all
are loaded, and a new bundle version swapped in whole (issues 12 and 14)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelyard.client import Registry
from modelyard.domain.errors import InvalidInput
from modelyard.serving.flavors import onnx as onnx_flavor
from modelyard.serving.follower import about_bundle, bundle_subject
from modelyard.serving.loader import LoadedVersion
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.table import ModelTable
from tests.conftest_server import stop_server
from tests.serving.models import onnx_predict, train, write_onnx
from tests.serving.servers import start_serving
from tests.serving.test_hot_swap import Load


def _body(rows: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "X", "datatype": "FP32", "shape": list(rows.shape), "data": rows.tolist()}
        ]
    }


def test_a_bundle_is_served_whole_and_follows_its_new_versions(
    live_server: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    det, clf, pipe = f"det-{suffix}", f"clf-{suffix}", f"pipe-{suffix}"
    d1, d2 = (write_onnx(train(s, c=c), tmp_path / f"d{s}.onnx") for s, c in ((0, 0.05), (1, 1.0)))
    c1 = write_onnx(train(2), tmp_path / "c1.onnx")
    reg = Registry(live_server, cache_dir=tmp_path / "sdk")
    reg.push(det, [d1], format="onnx")
    reg.push(clf, [c1], format="onnx")
    reg.set_alias(f"{det}/1", "production")
    reg.create_bundle(pipe, {"detector": f"{det}@production", "classifier": f"{clf}/1"})
    reg.pin_bundle(pipe)
    proc, url = start_serving(live_server, [], tmp_path / "serve", args=["--bundle", pipe])
    rows = train(0).rows[:3]
    try:
        for role in ("detector", "classifier"):
            assert httpx.get(f"{url}/v2/models/{role}/ready").status_code == 200
        meta = httpx.get(f"{url}/v2/models/classifier").json()
        assert meta["name"] == "classifier" and meta["versions"] == ["1"]
        answer = httpx.post(f"{url}/v2/models/classifier/infer", json=_body(rows)).json()
        np.testing.assert_array_equal(answer["outputs"][0]["data"], onnx_predict(c1, rows)["label"])
        # The models' own names are not served: the bundle's roles are.
        assert httpx.get(f"{url}/v2/models/{det}/ready").status_code == 404

        reg.push(det, [d2], format="onnx")
        reg.set_alias(f"{det}/2", "production")
        with Load(f"{url}/v2/models/detector/infer", _body(rows)) as load:
            load.wait_for("1")
            # Moving the alias alone changes nothing: bundle version 1 pins det/1.
            time.sleep(0.5)
            assert set(load.versions) == {"1"}
            reg.pin_bundle(pipe)  # bundle version 2: detector -> det/2
            load.wait_for("2")
        assert load.failures == []
        answer = httpx.post(f"{url}/v2/models/detector/infer", json=_body(rows)).json()
        assert answer["model_version"] == "2"
        np.testing.assert_array_equal(answer["outputs"][0]["data"], onnx_predict(d2, rows)["label"])
        assert httpx.get(f"{url}/v2/models/detector").json()["versions"] == ["2"]
        # The swap is driven by the bundle's event (the 10 s re-read only
        # covers missed ones): its subject is the one the follower watches.
        created = reg.list_events(types=["bundle.version_created"])
        mine = bundle_subject(pipe)
        assert mine is not None and bundle_subject(f"{pipe}/2") is None
        assert [e.subject for e in created if about_bundle(e.subject or "", mine)] == [
            f"{mine}/1",
            f"{mine}/2",
        ]
        # The classifier's version did not change, so it was not swapped.
        assert httpx.get(f"{url}/v2/models/classifier").json()["versions"] == ["1"]
    finally:
        stop_server(proc)
        reg.close()
    log = (tmp_path / "serve" / "serve.log").read_text()
    assert f"role detector moved: default/{det}/1 -> default/{det}/2" in log


def test_a_pinned_bundle_version_stays_and_a_broken_new_one_is_not_swapped(
    live_server: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    det, pipe = f"bd-{suffix}", f"bp-{suffix}"
    reg = Registry(live_server, cache_dir=tmp_path / "sdk")
    reg.push(det, [write_onnx(train(0), tmp_path / "ok.onnx")], format="onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    reg.push(det, [broken], format="onnx")
    reg.set_alias(f"{det}/1", "production")
    reg.create_bundle(pipe, {"detector": f"{det}@production"})
    reg.pin_bundle(pipe)
    followed, pinned = tmp_path / "followed", tmp_path / "pinned"
    proc, url = start_serving(live_server, [], followed, args=["--bundle", pipe])
    proc2, url2 = start_serving(live_server, [], pinned, args=["--bundle", f"{pipe}/1"])
    try:
        reg.set_alias(f"{det}/2", "production")
        reg.pin_bundle(pipe, accept_breaking=True)  # version 2 pins the broken det/2
        failures = 'modelyard_serving_load_failures_total{model="detector"}'
        deadline = time.monotonic() + 60
        while failures + " 1.0" not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline, "the failed load was never reported"
            time.sleep(0.1)
        for u in (url, url2):
            answer = httpx.post(f"{u}/v2/models/detector/infer", json=_body(train(0).rows[:1]))
            assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    finally:
        stop_server(proc)
        stop_server(proc2)
        reg.close()
    assert "the bundle keeps serving its roles as they were" in (followed / "serve.log").read_text()


def test_one_name_cannot_stand_for_two_things(tmp_path: Path) -> None:
    """A role named like a served model (or two namespaces' models of one
    name) is refused before the server starts."""
    path = write_onnx(train(0), tmp_path / "m.onnx")
    predictor = onnx_flavor.load({"m.onnx": path}, None)
    table = ModelTable(ServingMetrics())
    scorer = LoadedVersion("default/scorer/1", "default", "scorer", 1, "onnx", predictor)
    table.add("scorer/1", scorer)
    other = LoadedVersion("default/x/4", "default", "x", 4, "onnx", predictor)
    with pytest.raises(InvalidInput, match="two models served as 'scorer'") as err:
        table.add("p#scorer", other, name="scorer", owner="bundle default/p")
    assert err.value.code == "UNSERVABLE_VERSION"
    elsewhere = LoadedVersion("team/scorer/1", "team", "scorer", 1, "onnx", predictor)
    with pytest.raises(InvalidInput, match="serve them from two servers"):
        table.add("team/scorer/1", elsewhere)
    table.add("p#role", other, name="role", owner="bundle default/p")
    assert set(table.models) == {"scorer", "role"}
