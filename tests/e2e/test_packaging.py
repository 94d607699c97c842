"""What ships: the Dockerfile (hadolint, and what it promises operators) and the release binary
it builds with scripts/build-release.sh — checked without Docker, since images cannot be built
on these machines. The test command runs scripts/build-release.sh before these tests."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
import urllib.request

from harness import ROOT, VENV_BIN, start_gateway, stop

DIST = ROOT / "target" / "dist" / "mcpgate"
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def package() -> dict:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]


def test_dockerfile_is_hadolint_clean():
    out = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_dockerfile_builds_the_tested_release_and_runs_it_unprivileged():
    ins = instructions()
    froms = [args for kw, args in ins if kw == "FROM"]
    assert len(froms) == 2, "a build stage and a runtime stage"
    for image in froms:
        reference = image.split()[0]
        assert re.search(r":[\w.-]+$", reference), f"{reference} is not pinned to a tag"
    assert froms[-1] == "gcr.io/distroless/cc-debian12:nonroot"
    runs = [args for kw, args in ins if kw == "RUN"]
    assert any(r.startswith("scripts/build-release.sh") for r in runs), runs
    assert "scripts/build-release.sh" in (ROOT / "scripts" / "test.sh").read_text(), (
        "the test command must make the same release build the image does"
    )
    users = [args for kw, args in ins if kw == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric and not root"
    assert not any(kw == "HEALTHCHECK" for kw, _ in ins), "probes belong to the orchestrator"
    exposed = {p for kw, args in ins if kw == "EXPOSE" for p in args.split()}
    assert {"8080", "9090"} <= exposed
    entrypoint = [json.loads(args) for kw, args in ins if kw == "ENTRYPOINT"]
    cmd = [json.loads(args) for kw, args in ins if kw == "CMD"]
    assert entrypoint[-1] == ["/usr/local/bin/mcpgate"]
    assert cmd[-1] == ["serve", "--config", "/etc/mcpgate/mcpgate.yaml"]
    labels = {}
    for kw, args in ins:
        if kw == "LABEL":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                labels[key] = value
    pkg = package()
    oci = "org.opencontainers.image."
    assert labels[oci + "title"] == "mcpgate"
    assert labels[oci + "version"] == pkg["version"]
    assert labels[oci + "licenses"] == pkg["license"]
    assert labels[oci + "description"] == pkg["description"]
    assert labels[oci + "revision"] == "${MCPGATE_GIT_REVISION}"


def test_dockerignore_leaves_out_what_the_build_does_not_need():
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "target", ".e2e", ".bench", "**/node_modules"} <= ignored
    needed = {"src", "Cargo.toml", "Cargo.lock", "build.rs", "scripts", "benches", "examples", "tests"}
    assert not needed & ignored, f"the build needs {needed & ignored}"


def test_release_binary_is_stripped_and_names_its_revision():
    assert DIST.is_file(), f"{DIST} missing: scripts/build-release.sh builds it (the test command runs it)"
    sections = subprocess.run(
        ["readelf", "-S", "-W", str(DIST)], capture_output=True, text=True, check=True
    ).stdout
    for section in (".debug_info", ".debug_line", ".symtab"):
        assert section not in sections, f"{section} left in the shipped binary"
    revision = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    version = subprocess.run([str(DIST), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == f"mcpgate {package()['version']} ({revision})"


def test_release_binary_serves_and_reports_its_build(tmp_path):
    gw = start_gateway("""
listen: { addr: 127.0.0.1:0 }
admin: { addr: 127.0.0.1:0 }
upstreams:
  - id: nowhere
    http: { url: "http://127.0.0.1:9/mcp" }
""", tmp_path, binary=DIST)
    try:
        with urllib.request.urlopen(gw.admin + "/healthz") as r:
            assert r.status == 200
        with urllib.request.urlopen(gw.admin + "/metrics") as r:
            metrics = r.read().decode()
        version = subprocess.run([str(DIST), "--version"], capture_output=True, text=True).stdout
        revision = version.strip().rsplit("(", 1)[1].rstrip(")")
        assert f'revision="{revision}"' in metrics and f'version="{package()["version"]}"' in metrics
    finally:
        stop(gw.proc)
