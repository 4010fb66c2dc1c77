"""``modelyard build REF --out DIR``: a container build context for one version.

The context holds everything an image needs to serve the version without
downloading it again::

    DIR/Dockerfile              pinned base, non-root user, HEALTHCHECK on OIP
    DIR/requirements.txt        modelyard and the flavor's runtime, exact pins
    DIR/cache/sha256/xx/DIGEST  the version's files, named by their digests
    DIR/modelyard-build.json    what was built: reference, files, flavor, pins
    DIR/wheels/...              a local modelyard wheel, with ``--wheel``

``cache/`` is laid out as the SDK's blob cache, and the image's
``modelyard serve`` uses it as its cache: the version's files are found there
by digest and verified before they load, so the container asks the registry
only for the version's metadata (``MODELYARD_URL``/``MODELYARD_TOKEN`` at run
time). Each file is copied by its own ``COPY`` line naming its digest, so the
Dockerfile itself says which bytes the image serves.

There is no container engine here: the context is written, never built.
Its Dockerfile is parsed and linted in the tests (BuildKit's parser and
hadolint).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, requires
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from modelyard.client import Registry, VersionInfo
from modelyard.domain.errors import InvalidInput
from modelyard.serving.flavors import choose_flavor
from modelyard.serving.loader import allowed_exceptions, check_servable

DEFAULT_BASE_IMAGE = "python:3.11.14-slim-bookworm"
"""An exact tag (Python patch release and Debian release named): rebuilding
the context a month later starts from the same Python. Pass a digest
(``python@sha256:...``) with ``--base-image`` to pin the bytes too."""
CONTAINER_PORT = 8000
CACHE_DIR = "/var/lib/modelyard/cache"
APP_DIR = "/opt/modelyard"
USER_ID = 10001
"""Above the range distributions give to system users, so it matches no
account of the host (and Kubernetes' ``runAsNonRoot`` can check it)."""

_IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._/:-]*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_EXACT_RELEASE = re.compile(r"(?:^|[^0-9.])[0-9]+\.[0-9]+\.[0-9]+(?:[^0-9.]|$)")


@dataclass(frozen=True, slots=True)
class BuiltFile:
    """One file of the version as the image holds it."""

    path: str
    digest: str
    size: int

    @property
    def cache_path(self) -> str:
        """Its place in the context and the image's cache (the SDK's layout)."""
        return f"sha256/{self.digest[:2]}/{self.digest}"


@dataclass(frozen=True, slots=True)
class BuildPlan:
    """What a build context contains (``modelyard-build.json``)."""

    reference: str
    """The reference as given (``fraud@production``)."""
    ref: str
    """The exact version it resolved to (``default/fraud/7``): the image serves this."""
    namespace: str
    model: str
    version: int
    flavor: str
    base_image: str
    requirements: list[str]
    port: int = CONTAINER_PORT
    files: list[BuiltFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The plan as written to ``modelyard-build.json``."""
        return asdict(self)


def check_base_image(image: str) -> str:
    """``image`` if it is pinned: by digest (``name@sha256:<64 hex>``) or by an
    exact tag naming a full ``x.y.z`` release (``python:3.11.14-slim``); a
    floating tag (``python:3``, ``latest``, none) is refused with
    ``UNPINNED_BASE_IMAGE``: the same context would build different images."""
    name, at, digest = image.partition("@")
    if at:
        if _IMAGE_NAME.fullmatch(name) and _DIGEST.fullmatch(digest):
            return image
    else:
        # The tag follows the last ":" of the last path segment (a registry
        # host's port comes before a "/").
        host, slash, last = image.rpartition("/")
        repo, colon, tag = last.partition(":")
        if (
            colon
            and _IMAGE_NAME.fullmatch(f"{host}{slash}{repo}")
            and _TAG.fullmatch(tag)
            and _EXACT_RELEASE.search(tag)
        ):
            return image
    raise InvalidInput(
        f"base image {image!r} is not pinned: name an exact release tag "
        "(python:3.11.14-slim-bookworm) or a digest (python@sha256:...)",
        code="UNPINNED_BASE_IMAGE",
        details={"image": image},
    )


def _pins() -> dict[str, str]:
    """``name -> requirement`` as this modelyard pins its serving extra."""
    try:
        declared = requires("modelyard") or []
    except PackageNotFoundError:  # a source tree without an install
        declared = []
    pins: dict[str, str] = {}
    for line in declared:
        spec, _, marker = line.partition(";")
        if "serving" not in marker or "==" not in spec:
            continue
        name = spec.split("==", 1)[0].split("[", 1)[0].strip().lower()
        pins[name] = spec.strip()
    return pins


def flavor_requirements(requirements: tuple[str, ...]) -> list[str]:
    """Exact pins of a flavor's runtime packages: the serving extra's pin, else
    the installed version; ``MISSING_DEPENDENCY`` when neither exists."""
    pins = _pins()
    out = []
    for name in requirements:
        pin = pins.get(name.lower())
        if pin is None:
            try:
                pin = f"{name}=={installed_version(name)}"
            except PackageNotFoundError:
                raise InvalidInput(
                    f"cannot pin {name}: it is neither pinned by modelyard nor installed",
                    code="MISSING_DEPENDENCY",
                    details={"package": name},
                ) from None
        out.append(pin)
    return out


def _modelyard_requirement(wheel: Path | None) -> str:
    if wheel is not None:
        return f"{APP_DIR}/wheels/{wheel.name}"
    try:
        return f"modelyard=={installed_version('modelyard')}"
    except PackageNotFoundError:
        raise InvalidInput(
            "modelyard is not installed, so its version cannot be pinned: pass --wheel",
            code="MISSING_DEPENDENCY",
            details={"package": "modelyard"},
        ) from None


def plan_build(
    version: VersionInfo,
    reference: str,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    wheel: Path | None = None,
    port: int = CONTAINER_PORT,
    exceptions: frozenset[str] = frozenset(),
) -> BuildPlan:
    """What the context for ``version`` holds; refuses what ``modelyard serve``
    would refuse (state, format, pickles, custom code its policy does not
    allow: ``exceptions``) before any file is pulled."""
    check_servable(version)
    files = version.files or []
    flavor = choose_flavor(version.format, [str(f["path"]) for f in files], exceptions)
    return BuildPlan(
        reference=reference,
        ref=version.ref,
        namespace=version.namespace,
        model=version.model,
        version=version.version,
        flavor=flavor.NAME,
        base_image=check_base_image(base_image),
        requirements=[_modelyard_requirement(wheel), *flavor_requirements(flavor.REQUIREMENTS)],
        port=port,
        files=sorted(
            (BuiltFile(str(f["path"]), str(f["digest"]), int(f["size"])) for f in files),
            key=lambda f: f.path,
        ),
    )


def render_dockerfile(plan: BuildPlan) -> str:
    """The Dockerfile of a plan (see the module docstring)."""
    probe = (
        "import sys, urllib.request; "
        f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{plan.port}/v2/health/ready', "
        "timeout=2).status != 200)"
    )
    lines = [
        "# syntax=docker/dockerfile:1",
        f"# modelyard build context: {plan.ref} ({plan.flavor}), from {plan.reference}",
        f"FROM {plan.base_image}",
        "",
        'LABEL org.opencontainers.image.title="modelyard model server" \\',
        f'      io.modelyard.reference="{plan.ref}" \\',
        f'      io.modelyard.flavor="{plan.flavor}"',
        "ENV PYTHONDONTWRITEBYTECODE=1 \\",
        "    PYTHONUNBUFFERED=1 \\",
        "    PIP_DISABLE_PIP_VERSION_CHECK=1",
        "",
        "# A fixed non-root user: the model files and the cache are its own.",
        f"RUN groupadd --system --gid {USER_ID} modelyard \\",
        f"    && useradd --system --no-log-init --uid {USER_ID} --gid {USER_ID} \\",
        "       --home-dir /home/modelyard --create-home --shell /usr/sbin/nologin modelyard \\",
        f"    && install -d -o {USER_ID} -g {USER_ID} -m 0700 {CACHE_DIR}",
        "",
        f"COPY requirements.txt {APP_DIR}/requirements.txt",
    ]
    if any(r.startswith(f"{APP_DIR}/wheels/") for r in plan.requirements):
        lines.append(f"COPY wheels/ {APP_DIR}/wheels/")
    lines += [
        f"RUN pip install --no-cache-dir -r {APP_DIR}/requirements.txt",
        "",
        "# The version's files by digest, in the serving cache's layout: the",
        "# server verifies each against its digest before loading it.",
    ]
    for f in plan.files:
        lines.append(f"# {f.path} ({f.size} bytes)")
        lines.append(
            f"COPY --chown={USER_ID}:{USER_ID} cache/{f.cache_path} {CACHE_DIR}/{f.cache_path}"
        )
    lines += [
        "",
        f"USER {USER_ID}:{USER_ID}",
        "WORKDIR /home/modelyard",
        f"EXPOSE {plan.port}",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\",
        f"    CMD {json.dumps(['python', '-c', probe])}",
        'ENTRYPOINT ["modelyard", "serve"]',
        "CMD "
        + json.dumps(
            [
                plan.ref,
                "--host",
                "0.0.0.0",
                "--port",
                str(plan.port),
                "--cache-dir",
                CACHE_DIR,
                "--no-follow",
            ]
        ),
        "",
    ]
    return "\n".join(lines)


def _empty_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(
            f"{out} exists and is not an empty directory",
            code="OUTPUT_NOT_EMPTY",
            details={"path": str(out)},
        )


def write_context(
    registry: Registry,
    reference: str,
    out: Path,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    wheel: Path | None = None,
    port: int = CONTAINER_PORT,
) -> BuildPlan:
    """Resolve ``reference``, pull its files (digest-verified by the SDK) and
    write the build context into ``out`` (which must be empty or absent)."""
    _empty_target(out)
    if wheel is not None and not (wheel.is_file() and wheel.name.endswith(".whl")):
        raise InvalidInput(f"{wheel} is not a wheel file", code="INVALID_INPUT")
    version = registry.get_version(reference)
    plan = plan_build(
        version,
        reference,
        base_image=base_image,
        wheel=wheel,
        port=port,
        # Nothing is loaded here: checked only, without the loading warning.
        exceptions=allowed_exceptions(registry, version, loading=False),
    )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=out) as work:
        # The exact version resolved above, not ``reference`` again: an alias
        # moving in between must not mix two versions' metadata and files.
        _, pulled = registry.pull_version(plan.ref, work)
        for f in plan.files:
            target = out / "cache" / f.cache_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(pulled / f.path, target)
            target.chmod(0o444)
    if wheel is not None:
        (out / "wheels").mkdir()
        shutil.copyfile(wheel, out / "wheels" / wheel.name)
    (out / "requirements.txt").write_text("\n".join(plan.requirements) + "\n")
    (out / "Dockerfile").write_text(render_dockerfile(plan))
    # Only what the Dockerfile copies is sent to the builder.
    (out / ".dockerignore").write_text("*\n!requirements.txt\n!cache/\n!wheels/\n")
    (out / "modelyard-build.json").write_text(json.dumps(plan.to_json(), indent=2) + "\n")
    return plan
