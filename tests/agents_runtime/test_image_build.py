"""What can be checked of the image without building it, and agents.build / lock-agent."""
import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents import build

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (build.IMAGE_DIR / "Dockerfile").read_text()
SUMS = {"linux-x64": "a" * 64, "linux-arm64": "b" * 64, "linux-arm": "c" * 64}


def test_every_platform_maps_to_its_package_and_checksum_argument():
    for platform, (package, key) in build.PLATFORMS.items():
        case = re.search(rf"^\s*{re.escape(platform)}\)\s+package={package};\s+sum=\"\$\{{{key}\}}\"",
                         DOCKERFILE, re.M)
        assert case, f"{platform} is not mapped to {package}/{key}"
        assert f"ARG {key}=" in DOCKERFILE
    assert 'sha256sum -c' in DOCKERFILE and 'test -n "${sum}"' in DOCKERFILE


def test_versions_are_pinned():
    lock = build.read_lock()
    assert re.fullmatch(r"\d+\.\d+\.\d+", lock["AGENT_VERSION"])
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", DOCKERFILE, re.M):
        assert re.search(r":v?\d+(\.\d+)+", image) and "latest" not in image


def test_non_root_tini_no_docker_socket_and_the_tools():
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users == ["10001:10001"]
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/azp-entrypoint"]' in DOCKERFILE
    for tool in ("ca-certificates", "curl", "git", "jq", "python3", "tini"):
        assert re.search(rf"\s{tool}\s", DOCKERFILE), tool
    assert "/usr/local/bin/buildctl" in DOCKERFILE
    for path in build.IMAGE_DIR.iterdir():
        if path.suffix != ".md":
            assert "docker.sock" not in path.read_text(), path.name


def test_probe_and_entrypoint_are_executable_scripts():
    for name in ("azp-entrypoint", "azp-probe"):
        path = build.IMAGE_DIR / name
        assert os.access(path, os.X_OK)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_buildx_command_carries_platforms_version_and_checksums():
    args = build.BuildArgs(registry="myacr.azurecr.io", platforms=list(build.PLATFORMS), tag="4.275.0-1")
    lock = {"AGENT_VERSION": "4.275.0", **{key: SUMS[pkg] for pkg, key in build.PLATFORMS.values()}}
    command = build.buildx_command(args, build.build_args_from_lock(lock, args.platforms), push=True)
    assert command[:3] == ["docker", "buildx", "build"]
    assert "linux/amd64,linux/arm64,linux/arm/v7" in command
    assert "myacr.azurecr.io/mlops-edge-kit/azp-agent:4.275.0-1" in command
    assert f"AGENT_SHA256_LINUX_ARM_V7={'c' * 64}" in command and "--push" in command
    assert command[-1] == str(build.IMAGE_DIR)


def test_a_lock_without_a_checksum_is_refused_naming_the_platform():
    with pytest.raises(build.BuildError, match="linux/arm/v7"):
        build.build_args_from_lock({"AGENT_VERSION": "4.275.0", "AGENT_SHA256_LINUX_AMD64": "a" * 64},
                                   ["linux/amd64", "linux/arm/v7"])


def _kit_build(tmp_path, docker_script: str | None):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    path = f"{bindir}:/usr/bin:/bin"
    if docker_script is not None:
        (bindir / "docker").write_text(docker_script)
        (bindir / "docker").chmod(0o755)
    return subprocess.run([str(REPO / ".venv/bin/invoke"), "agents.build", "--registry", "r.example.io"],
                          cwd=REPO, env={"PATH": path, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)


def test_build_without_docker_says_so_and_fails(tmp_path):
    result = _kit_build(tmp_path, None)
    assert result.returncode == 1 and "docker is not installed" in result.stderr


def test_build_without_buildx_or_daemon_says_so_and_fails(tmp_path):
    no_buildx = _kit_build(tmp_path, "#!/bin/sh\necho \"docker: unknown command: docker buildx\" >&2\nexit 1\n")
    assert no_buildx.returncode == 1 and "buildx plugin is missing" in no_buildx.stderr


def test_build_without_a_reachable_builder_says_so(tmp_path):
    script = ('#!/bin/sh\n[ "$2" = version ] && exit 0\n'
              'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2\nexit 1\n')
    result = _kit_build(tmp_path, script)
    assert result.returncode == 1 and "no buildx builder is reachable" in result.stderr


@pytest.fixture
def releases():
    bodies = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            tag = self.path.rsplit("/", 1)[-1]
            code, payload = (200, {"body": bodies[tag]}) if tag in bodies else (404, {"message": "Not Found"})
            raw = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield bodies, f"http://127.0.0.1:{server.server_address[1]}/tags"
    server.shutdown()


def _notes(version: str, packages) -> str:
    rows = [f"| {p} | [vsts-agent-{p}-{version}.tar.gz](https://download.agent.dev.azure.com/agent/"
            f"{version}/vsts-agent-{p}-{version}.tar.gz) | {SUMS[p].upper()} |" for p in packages]
    return "## Agent Downloads\n\n| | Package | SHA-256 |\n| -- | -- | -- |\n" + "\n".join(rows)


def test_lock_agent_reads_the_published_checksums(releases, tmp_path):
    bodies, api = releases
    bodies["v4.275.0"] = _notes("4.275.0", ["linux-arm64", "linux-arm", "linux-x64"])
    sums = build.published_checksums("4.275.0", api)
    assert sums == {"AGENT_SHA256_LINUX_AMD64": SUMS["linux-x64"],
                    "AGENT_SHA256_LINUX_ARM64": SUMS["linux-arm64"],
                    "AGENT_SHA256_LINUX_ARM_V7": SUMS["linux-arm"]}
    lock = tmp_path / "agent.lock"
    lock.write_text("# pinned\nAGENT_VERSION=1.0.0\n")
    build.write_lock("4.275.0", sums, lock)
    assert build.read_lock(lock)["AGENT_SHA256_LINUX_ARM_V7"] == SUMS["linux-arm"]
    assert lock.read_text().startswith("# pinned\n")


def test_lock_agent_refuses_notes_without_a_platform_or_an_unknown_release(releases):
    bodies, api = releases
    bodies["v4.1.0"] = _notes("4.1.0", ["linux-x64", "linux-arm64"])
    with pytest.raises(build.BuildError, match="no SHA-256 for linux-arm$"):
        build.published_checksums("4.1.0", api)
    with pytest.raises(build.BuildError, match="cannot read the release notes of agent v9.9.9"):
        build.published_checksums("9.9.9", api)
