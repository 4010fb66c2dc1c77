"""SDK (remote and embedded, one interface) and CLI against a real server process."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import InvalidInput, NotFound
from modelyard.store.metadata.migrate import SCHEMA_HEAD


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "model.onnx": os.urandom(300_000),
        "config/labels.json": b'{"0": "cat"}',
        "config/thresholds.txt": b"0.5\n",
        "README.md": b"# model\n",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["remote", "embedded"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    if request.param == "remote":
        url = request.getfixturevalue("live_server")
        return Registry(url, cache_dir=tmp_path / "cache")
    return Registry(tmp_path / "embedded", cache_dir=tmp_path / "cache")


def test_push_search_pull_roundtrip(registry: Registry, tmp_path: Path) -> None:
    name = "m" + uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    files = make_tree(src)
    v1 = registry.push(
        name, src, framework="onnx", metrics={"acc": 0.91}, tags={"team": "vision", "run": name}
    )
    assert v1.version == 1 and v1.state == "ready"
    assert {f["path"] for f in v1.files or []} == set(files)
    v2 = registry.push(
        name,
        src,
        metrics={"acc": 0.95},
        tags={"run": name},
        parent=f"{name}/1",
        relation="finetuned",
    )
    assert v2.version == 2 and v2.lineage["parent"] == f"default/{name}/1"
    found = list(registry.search_versions(f"tags.run = '{name}' AND metrics.acc > 0.93"))
    assert [v.version for v in found] == [2]
    out = registry.pull(f"{name}@latest", tmp_path / "out")
    assert read_tree(out) == files
    # A second pull comes from the verified cache.
    out2 = registry.pull(f"{name}/1", tmp_path / "out2")
    assert read_tree(out2) == files
    registry.set_alias(f"{name}/1", "champion")
    assert registry.get_version(f"{name}@champion").version == 1
    tagged = registry.tag(f"{name}/1", {"ok": "yes"}, delete=["team"])
    assert tagged.tags == {"ok": "yes", "run": name}
    assert [m.name for m in registry.search_models(f"name = '{name}'")] == [name]
    with pytest.raises(NotFound) as exc:
        registry.get_version(f"{name}/9")
    assert exc.value.code == "VERSION_NOT_FOUND"
    with pytest.raises(InvalidInput):
        list(registry.search_versions("tags.x ==="))
    registry.close()


def test_corrupt_cache_entry_is_detected(registry: Registry, tmp_path: Path) -> None:
    name = "c" + uuid.uuid4().hex[:8]
    (tmp_path / "f.bin").write_bytes(b"original bytes")
    v = registry.push(name, tmp_path / "f.bin")
    registry.pull(v.ref, tmp_path / "o1", link=True)
    cached = registry.cache.path_for((v.files or [])[0]["digest"])
    # With link=True pulled files share the cache's read-only inode.
    pulled = tmp_path / "o1" / "f.bin"
    assert os.path.samefile(cached, pulled)
    assert not os.access(pulled, os.W_OK) or os.geteuid() == 0
    assert pulled.stat().st_mode & 0o222 == 0
    cached.chmod(0o644)
    cached.write_bytes(b"tampered bytes")  # same size, different content
    # The damaged entry is dropped and fetched again; the pull gets the right bytes.
    registry.pull(v.ref, tmp_path / "o2")
    assert (tmp_path / "o2" / "f.bin").read_bytes() == b"original bytes"
    assert cached.read_bytes() == b"original bytes"
    registry.close()


def test_pulled_files_are_independent_of_the_cache_and_of_each_other(
    registry: Registry, tmp_path: Path
) -> None:
    """Issue 9: pulls were hard links into the cache, so appending to one pulled
    file (as root) changed the cache and every earlier pull. Now each pull is
    the caller's own file; ``link=True`` still links, on request."""
    name = "i" + uuid.uuid4().hex[:8]
    (tmp_path / "model.onnx").write_bytes(b"weights")
    v = registry.push(name, tmp_path / "model.onnx")
    first = registry.pull(v.ref, tmp_path / "a") / "model.onnx"
    second = registry.pull(v.ref, tmp_path / "b") / "model.onnx"
    cached = registry.cache.path_for((v.files or [])[0]["digest"])
    assert not os.path.samefile(first, cached) and not os.path.samefile(first, second)
    assert first.stat().st_nlink == 1 and os.access(first, os.W_OK)
    with open(first, "ab") as f:
        f.write(b"x\n")
    assert second.read_bytes() == b"weights" and cached.read_bytes() == b"weights"
    # Pulling again over an edited file restores it.
    registry.pull(v.ref, tmp_path / "a")
    assert first.read_bytes() == b"weights"
    registry.close()


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_pulling_twice_into_one_directory_leaves_nothing_behind(
    registry: Registry, tmp_path: Path, link: bool
) -> None:
    """Issue 9: a second pull of the same version left ``.NAME.link-PID-N``
    files (rename(2) does nothing when both names are one inode)."""
    name = "t" + uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    files = make_tree(src)
    v = registry.push(name, src)
    for _ in range(3):
        registry.pull(v.ref, tmp_path / "out", link=link)
    assert read_tree(tmp_path / "out") == files
    assert sorted(p.name for p in (tmp_path / "out").rglob(".*")) == []
    registry.close()


def test_pull_into_a_file_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    name = "d" + uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    make_tree(src)
    v = registry.push(name, src)
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(InvalidInput) as exc:
        registry.pull(v.ref, tmp_path / "afile")
    assert exc.value.code == "INVALID_DESTINATION"
    # A file in the way of one of the version's directories ("config/...").
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config").write_text("in the way")
    with pytest.raises(InvalidInput) as exc:
        registry.pull(v.ref, tmp_path / "out")
    assert exc.value.code == "INVALID_DESTINATION"
    assert (tmp_path / "afile").read_text() == "mine"
    registry.close()


def test_empty_push_is_refused_unless_asked_for(registry: Registry, tmp_path: Path) -> None:
    name = "e" + uuid.uuid4().hex[:8]
    (tmp_path / "empty").mkdir()
    (tmp_path / "f").write_text("x")
    registry.push(name, tmp_path / "f")
    with pytest.raises(InvalidInput) as exc:
        registry.push(name, tmp_path / "empty")
    assert exc.value.code == "EMPTY_VERSION"
    assert registry.get_version(f"{name}@latest").version == 1
    v = registry.push(name, tmp_path / "empty", allow_empty=True)
    assert v.version == 2 and v.files == []
    registry.close()


def test_search_raises_when_called_not_when_iterated(registry: Registry) -> None:
    with pytest.raises(InvalidInput):
        registry.search_versions("tags.x ===")
    with pytest.raises(InvalidInput):
        registry.search_models("name >>> 'x'")
    with pytest.raises(NotFound):
        registry.list_versions("no-such-model-" + uuid.uuid4().hex[:6])
    registry.close()


def test_host_port_means_http_and_other_schemes_are_refused(
    live_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    host_port = live_server.removeprefix("http://")
    with Registry(host_port, cache_dir=tmp_path / "cache") as reg:
        assert reg.whoami()["name"] == "anonymous"
    assert not (tmp_path / host_port).exists()
    with pytest.raises(InvalidInput) as exc:
        Registry("ftp://127.0.0.1:21")
    assert exc.value.code == "INVALID_REGISTRY"


def test_unreachable_server_is_named_and_push_fails_before_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9: the error did not say which URL failed, and push hashed every
    file before finding out."""
    from modelyard.client import transfer
    from modelyard.client.errors import ServerError
    from tests.conftest_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    hashed: list[Path] = []
    real_hash = transfer.hash_file
    monkeypatch.setattr(
        transfer, "hash_file", lambda path, progress=None: hashed.append(path) or real_hash(path)
    )
    (tmp_path / "w.bin").write_bytes(b"weights")
    with Registry(url, cache_dir=tmp_path / "cache") as reg, pytest.raises(ServerError) as exc:
        reg.push("m", tmp_path / "w.bin")
    assert exc.value.code == "UNREACHABLE"
    assert url in exc.value.message and exc.value.details["url"] == url
    assert hashed == []


def test_big_files_hash_while_uploading_and_repush_reads_nothing(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files above the stream threshold are hashed on the way up (one read);
    the digest is remembered by stat, so an unchanged file is not read again,
    and a changed one is."""
    from modelyard.client import transfer

    monkeypatch.setattr(transfer, "STREAM_HASH_MIN", 1024)
    monkeypatch.setattr(transfer, "RACY_WINDOW_NS", 0)
    name = "s" + uuid.uuid4().hex[:8]
    big = tmp_path / "weights.bin"
    data = os.urandom(300_000)
    big.write_bytes(data)
    reads: list[Path] = []
    real_iter, real_hash = transfer.iter_file, transfer.hash_file

    def counting_iter(path: Path, progress: transfer.Progress | None = None) -> Any:
        reads.append(path)
        return real_iter(path, progress)

    def counting_hash(path: Path, progress: transfer.Progress | None = None) -> Any:
        reads.append(path)
        return real_hash(path, progress)

    monkeypatch.setattr(transfer, "iter_file", counting_iter)
    monkeypatch.setattr(transfer, "hash_file", counting_hash)
    import modelyard.client.backends as backends

    monkeypatch.setattr(backends, "iter_file", counting_iter)
    v1 = registry.push(name, big)
    assert reads == [big]  # one pass: hashed while uploading
    assert (v1.files or [])[0]["digest"] == hashlib.sha256(data).hexdigest()
    reads.clear()
    v2 = registry.push(name, big)
    assert reads == []  # remembered digest, blob present: nothing read, nothing sent
    assert (v2.files or [])[0]["digest"] == (v1.files or [])[0]["digest"]
    big.write_bytes(os.urandom(300_000))  # same size, new bytes, new mtime/ctime
    v3 = registry.push(name, big)
    assert reads == [big]
    assert (v3.files or [])[0]["digest"] == hashlib.sha256(big.read_bytes()).hexdigest()
    registry.pull(v3.ref, tmp_path / "out")
    assert (tmp_path / "out" / "weights.bin").read_bytes() == big.read_bytes()
    registry.close()


def test_cli_push_search_pull(live_server: str, tmp_path: Path) -> None:
    runner = CliRunner()
    name = "cli" + uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    files = make_tree(src)
    env = {
        "MODELYARD_URL": live_server,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }
    r = runner.invoke(
        app,
        [
            "push",
            name,
            str(src),
            "--framework",
            "onnx",
            "-m",
            "acc=0.9",
            "-t",
            "stage=dev",
            "--json",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["version"] == 1
    r = runner.invoke(app, ["search", f"tags.stage = 'dev' AND name = '{name}'", "--json"], env=env)
    assert r.exit_code == 0 and [v["version"] for v in json.loads(r.stdout)] == [1]
    r = runner.invoke(app, ["pull", f"{name}@latest", str(tmp_path / "out")], env=env)
    assert r.exit_code == 0, r.output
    assert read_tree(tmp_path / "out") == files
    r = runner.invoke(app, ["tag", f"{name}/1", "ok=1", "-d", "stage", "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.stdout)["tags"] == {"ok": "1"}
    r = runner.invoke(app, ["ls", "--json"], env=env)
    assert name in {m["name"] for m in json.loads(r.stdout)}
    r = runner.invoke(app, ["ls", name], env=env)
    assert r.exit_code == 0 and f"default/{name}/1" in r.stdout
    r = runner.invoke(app, ["show", f"{name}/1"], env=env)
    assert r.exit_code == 0 and "model.onnx" in r.stdout
    r = runner.invoke(app, ["show", f"{name}/7"], env=env)
    assert r.exit_code == 1 and "VERSION_NOT_FOUND" in r.stderr
    r = runner.invoke(app, ["search", "metrics.acc >>> 1"], env=env)
    assert r.exit_code == 1 and "INVALID_FILTER" in r.stderr


def test_cli_db_upgrade(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert f"revision {SCHEMA_HEAD}" in r.stdout
    assert (tmp_path / "registry.db").exists()


def test_big_file_round_trip_through_the_pipelined_writers(
    registry: Registry, tmp_path: Path
) -> None:
    """Above ``hashio.PIPELINE_MIN`` both the server's blob writer and the SDK's
    cache writer hash and write on worker threads (direct I/O where the disk
    allows); the bytes and digests come through unchanged, unaligned tail too."""
    from modelyard.hashio import PIPELINE_MIN

    name = "big" + uuid.uuid4().hex[:8]
    src = tmp_path / "w.bin"
    data = os.urandom(PIPELINE_MIN + 4096 * 3 + 17)
    src.write_bytes(data)
    v = registry.push(name, src)
    assert (v.files or [])[0]["digest"] == hashlib.sha256(data).hexdigest()
    out = registry.pull(v.ref, tmp_path / "out")
    assert (out / "w.bin").read_bytes() == data
    registry.close()
