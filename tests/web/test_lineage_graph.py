"""The version page's lineage graph (server-drawn SVG): the family tree with
the path from the original emphasised, links to the other members, the
inputs (run, datasets, code) pointing into the version, a cut for big
families, and no script anywhere in it."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests.helpers import push
from tests.web.html_checks import parse, unsafe_markup


def _svg(html: str) -> str:
    found = re.search(r'<svg class="lineage-graph".*?</svg>', html, re.S)
    assert found, "no lineage graph on the page"
    return found.group(0)


def _nodes(svg: str) -> dict[str, str]:
    """label -> the node's classes."""
    return {
        text: classes
        for classes, text in re.findall(r'<g class="([^"]+)">.*?<text[^>]*>([^<]*)</text>', svg)
    }


def test_family_tree_path_and_inputs(client: TestClient) -> None:
    push(client, "base", {"w": b"0"})
    push(client, "m", {"a": b"1"}, lineage={"original": "base/1", "relation": "converted"})
    push(
        client,
        "m",
        {"a": b"2"},
        create=False,
        lineage={
            "parent": "m/1",
            "relation": "quantized",
            "source_run": "run-<b>42</b>",
            "code_ref": "git:abc",
            "datasets": ["ds@1", {"name": "holdout", "version": "3"}],
        },
    )
    push(client, "m", {"a": b"3"}, create=False, lineage={"parent": "base/1", "relation": "pruned"})
    client.post("/api/v1/models/default/m/versions/1/publish")
    html = client.get("/models/default/m/versions/2").text
    assert unsafe_markup(html) == []
    svg = _svg(html)
    nodes = _nodes(svg)
    assert nodes == {
        "base/1 · original": "node node-path node-state-ready",
        "v1 · converted": "node node-path node-state-published",
        "v2 · quantized": "node node-self node-state-ready",
        "v3 · pruned": "node node-member node-state-ready",
        "run run-&lt;b&gt;42&lt;/b&gt;": "node node-run",
        "data ds@1": "node node-dataset",
        "data holdout@3": "node node-dataset",
        "code git:abc": "node node-code",
    }
    # Every other member is a link; this version is not.
    links = [a["href"] for tag, a in parse(svg).tags if tag == "a"]
    assert links == [
        "/models/default/base/versions/1",
        "/models/default/m/versions/1",
        "/models/default/m/versions/3",
    ]
    # original -> v1 -> v2 emphasised; v3 hangs off the original plainly; four inputs.
    assert svg.count('class="edge edge-path"') == 2
    assert svg.count('class="edge edge-tree"') == 1
    assert svg.count('class="edge edge-input" marker-end="url(#arrow)"') == 4
    # The raw HTML in the run id is text, escaped.
    assert "run-&lt;b&gt;42&lt;/b&gt;" in svg
    # Seen from the original: the same family, the original emphasised.
    from_root = _nodes(_svg(client.get("/models/default/base/versions/1").text))
    assert from_root["v1 · original"].startswith("node node-self")
    assert from_root["m/2 · quantized"].startswith("node node-member")
    # A lone version is a one-node graph with no edges.
    push(client, "solo", {"s": b"1"})
    svg = _svg(client.get("/models/default/solo/versions/1").text)
    assert list(_nodes(svg)) == ["v1 · original"] and "edge" not in svg


def test_big_family_is_cut_but_keeps_the_path(client: TestClient) -> None:
    push(client, "f", {"a": b"root"})
    for i in range(34):
        push(client, "f", {"a": str(i).encode()}, create=False, lineage={"parent": "f/1"})
    # v35 is the newest: last in the tree, beyond the cut, yet drawn.
    svg = _svg(client.get("/models/default/f/versions/35").text)
    nodes = _nodes(svg)
    # The page loads an excerpt of 30 members (the root, this version, then
    # the newest): it never loads a whole family.
    assert len(nodes) == 30 and nodes["v35"].startswith("node node-self")
    assert "v1 · original" in nodes and "v6 · finetuned" not in nodes
    page = client.get("/models/default/f/versions/35").text
    assert "5 more version(s) of this family are not drawn" in page


def test_deep_chain_draws_the_nearest_ancestors_and_the_root(client: TestClient) -> None:
    push(client, "c", {"a": b"root"})
    for i in range(2, 41):
        push(client, "c", {"a": str(i).encode()}, create=False, lineage={"parent": f"c/{i - 1}"})
    nodes = _nodes(_svg(client.get("/models/default/c/versions/40").text))
    # The root, this version, its 15 nearest ancestors, then the newest
    # others up to 30: the oldest part of the chain is left out.
    assert len(nodes) == 30 and nodes["v40"].startswith("node node-self")
    assert "v1 · original" in nodes and all(f"v{n}" in nodes for n in range(12, 40))
    assert not any(f"v{n}" in nodes for n in range(2, 12))
    page = client.get("/models/default/c/versions/40").text
    assert "10 more version(s) of this family are not drawn" in page
