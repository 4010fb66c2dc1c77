"""The model page's alias timeline in pages of 100 moves, newest first, and
its current aliases from the aliases themselves (not a replay of history)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests.helpers import push
from tests.web.html_checks import page_text


def _timeline(html: str) -> list[str]:
    found = re.search(r'<ol class="timeline">(.*?)</ol>', html, re.S)
    assert found is not None
    entries = re.findall(r"<li>(.*?)</li>", found.group(1), re.S)
    return [q.group(1) if (q := re.search(r"<q>(.*?)</q>", e)) else "" for e in entries]


def test_timeline_pages_and_current_aliases(client: TestClient) -> None:
    push(client, "m", {"a": b"1"})
    push(client, "m", {"a": b"2"}, create=False)
    for i in range(104):
        r = client.put(
            "/api/v1/models/default/m/aliases/prod",
            json={"version": str(1 + i % 2), "reason": f"move {i}"},
        )
        assert r.status_code == 200, r.text
    client.delete("/api/v1/models/default/m/aliases/prod")
    client.put("/api/v1/models/default/m/aliases/canary", json={"version": "2", "reason": "last"})
    first = client.get("/models/default/m", params={"metric": "acc"})
    reasons = _timeline(first.text)
    # Newest first: canary's move, prod's removal (no reason), prod's last move.
    assert len(reasons) == 100 and reasons[:3] == ["last", "", "move 103"]
    # prod was removed: only canary is current.
    aliases = re.search(r'<div id="live-aliases".*?</div>', first.text, re.S)
    assert aliases is not None
    current = page_text(aliases.group(0))
    assert "@canary" in current and "@prod" not in current
    older = re.search(r'rel="next" href="([^"]+)">Older moves', first.text)
    assert older is not None and "metric=acc" in older.group(1)
    second = client.get(older.group(1).replace("&amp;", "&"))
    rest = _timeline(second.text)
    # 104 moves + the removal + canary = 106: 6 more, the first move last.
    assert len(rest) == 6 and rest[-1] == "move 0"
    assert "Newest moves" in second.text and "Older moves" not in second.text
    bad = client.get("/models/default/m", params={"moves": "nope"})
    assert bad.status_code == 400 and "INVALID_CURSOR" in bad.text
