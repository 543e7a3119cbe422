"""fedgate's image: the Containerfile read as text (non-root, installed from the lock file with the Makefile's uv,
fitting what the Helm charts run and mount), and the image built for real by image/build-local where buildah
and mmdebstrap are installed (a `services` test: it takes a minute or two, skips where they are missing, and
fails there under FEDGATE_REQUIRE_SERVICES=1, as .ci/run installs them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_service
from tests.helm.charts import AGENT, GATEWAY, by_kind, manifests

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
BUILD_LOCAL = ROOT / "image" / "build-local"
BUILD_TIMEOUT_S = 1800
# The charts' container commands that are not fedgate itself: the readiness probe and the gateway's config init
# container run `python3` (they import grpcio and cryptography), the agent's credentials init container `sh`.
CHART_COMMANDS = {"python3", "sh"}

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [
        (keyword.upper(), args.strip())
        for keyword, _, args in (line.strip().partition(" ") for line in joined.splitlines())
        if keyword
    ]


def stages(text: str) -> list[list[Instruction]]:
    """The build stages, each from its FROM on; what precedes the first FROM (global ARGs) is left out."""
    found: list[list[Instruction]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def makefile_uv_version() -> str:
    found = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, "the Makefile pins uv as UV_VERSION"
    return found.group(1)


def values(chart: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((chart / "values.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def containerfile() -> str:
    return CONTAINERFILE.read_text()


@pytest.fixture(scope="module")
def final(containerfile: str) -> list[Instruction]:
    return stages(containerfile)[-1]


def test_the_image_runs_as_the_charts_non_root_user(final: list[Instruction]) -> None:
    users = arguments(final, "USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: a numeric uid (runAsNonRoot checks numbers), not 0"
    for chart in (GATEWAY, AGENT):
        context = values(chart)["podSecurityContext"]
        assert context["runAsNonRoot"] is True
        assert int(uid) == context["runAsUser"], f"{chart.name} runs as {context['runAsUser']}, the image as {uid}"
        assert gid and int(gid) == context["runAsGroup"]


def test_fedgate_is_installed_from_the_lock_file_only(containerfile: str) -> None:
    syncs = [args for kw, args in instructions(containerfile) if kw == "RUN" and "uv sync" in args]
    assert syncs, "the builder installs with uv sync"
    for run in syncs:
        assert "--frozen" in run, f"uv sync without --frozen re-resolves instead of reading uv.lock: {run}"
        assert "--no-editable" in run, f"an editable install links to the builder's /src: {run}"
    assert not [
        args for kw, args in instructions(containerfile) if kw == "RUN" and re.search(r"pip install (?!.*uv==)", args)
    ], "nothing but uv itself is installed with pip: the rest comes from uv.lock"


def test_the_builder_uses_the_makefiles_uv(containerfile: str) -> None:
    builder = stages(containerfile)[0]
    assert f"UV_VERSION={makefile_uv_version()}" in arguments(builder, "ARG")
    assert any('"uv==${UV_VERSION}"' in args for args in arguments(builder, "RUN"))


def test_only_the_virtualenv_reaches_the_final_stage(final: list[Instruction]) -> None:
    copies = arguments(final, "COPY")
    assert copies == ["--from=builder /opt/fedgate /opt/fedgate"]
    path = next(args for args in arguments(final, "ENV") if args.startswith("PATH="))
    assert path.startswith("PATH=/opt/fedgate/bin:"), "fedgate and the virtualenv's python3 come first on PATH"
    assert json.loads(arguments(final, "ENTRYPOINT")[-1]) == ["fedgate"]


def test_the_chart_images_are_this_image_at_the_project_version() -> None:
    for chart in (GATEWAY, AGENT):
        image = values(chart)["image"]
        assert image["repository"] == values(GATEWAY)["image"]["repository"], "both charts run the one image"
        assert image["tag"] == "", "the tag defaults to appVersion"
        assert yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"] == project_version()


def test_what_the_charts_mount_writable_exists_for_the_user(final: list[Instruction]) -> None:
    owned = {
        path
        for args in arguments(final, "RUN")
        for paths in re.findall(r"chown 10001:10001 ([^&;|]+)", args)
        for path in paths.split()
    }
    for chart in (GATEWAY, AGENT):
        for deployment in by_kind(manifests(chart), "Deployment"):
            spec = deployment["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                for mount in container["volumeMounts"]:
                    if mount.get("readOnly") or mount["mountPath"] == "/tmp":
                        continue
                    assert mount["mountPath"] in owned, (
                        f"{chart.name}/{container['name']} writes {mount['mountPath']}: the image must make it "
                        "for uid 10001"
                    )
                assert not set(container.get("command", [])[:1]) - CHART_COMMANDS - {"fedgate"}


def test_the_build_context_leaves_out_the_local_state() -> None:
    ignored = set((ROOT / ".containerignore").read_text().split())
    assert {".git", ".venv", "tests/node/node_modules"} <= ignored


@pytest.mark.services
def test_the_image_builds_and_runs_fedgate_as_uid_10001() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        require_service("The image build", f"{' and '.join(missing)} missing (apt-get install buildah mmdebstrap)")
    if os.geteuid() != 0:
        require_service("The image build", "image/build-local needs root (mmdebstrap, buildah --isolation chroot)")
    done = subprocess.run(
        [str(BUILD_LOCAL)], cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"image/build-local failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    report = {key: value for key, _, value in (line.partition(": ") for line in done.stdout.splitlines())}
    assert report["version"] == f"fedgate {project_version()}"
    assert report["uid"] == "10001"
