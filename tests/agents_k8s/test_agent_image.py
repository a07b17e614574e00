"""The agent image carries the kit's tools, pinned and verified, and keeps their state off the read-only root."""
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents import build
from tests.agents_k8s.test_agent_manifests import CLUSTER_ARCHES, agent_container, pod

DOCKERFILE = (build.IMAGE_DIR / "Dockerfile").read_text()
REPO = Path(__file__).resolve().parents[2]
STATE_ENV = ("HOME", "XDG_CACHE_HOME", "PIP_CACHE_DIR", "AZURE_CONFIG_DIR", "PULUMI_HOME", "KUBECONFIG")


def dockerfile_env() -> dict[str, str]:
    block = DOCKERFILE[DOCKERFILE.rindex("\nENV "):].split("\nUSER")[0]
    return dict(re.findall(r"(\w+)=(\S+)", block))


def test_every_pin_in_the_lock_reaches_the_build_and_every_build_argument_is_pinned():
    lock = build.read_lock()
    arguments = set(re.findall(r"^ARG (\w+)", DOCKERFILE, re.M)) - {"DEBIAN_IMAGE", "BUILDKIT_IMAGE", "TARGETPLATFORM",
                                                                      "TARGETARCH"}
    assert arguments == set(build.pins(lock)), "agent.lock and the Dockerfile's build arguments name the same pins"
    platforms = list(build.PLATFORMS)
    passed = {**build.build_args_from_lock({**lock, **{k: "0" * 64 for k in lock if "SHA256" in k}}, platforms),
              **build.tool_build_args({**lock, **{k: "0" * 64 for k in lock if "SHA256" in k}}, platforms)}
    assert set(passed) == set(build.pins(lock))


def test_the_agent_release_is_pinned_with_its_published_checksums():
    lock = build.read_lock()
    assert lock["AGENT_VERSION"] == "4.269.0"
    assert all(re.fullmatch(r"[0-9a-f]{64}", lock[key]) for _, key in build.PLATFORMS.values())


@pytest.mark.parametrize("tool", build.TOOLS, ids=lambda t: t.name)
def test_each_tool_is_downloaded_per_platform_and_verified(tool):
    host = re.match(r"https://[^/]+", tool.checksums).group(0)
    assert f"fetch \"{host}/" in DOCKERFILE, f"{tool.name} is downloaded from {host} through fetch"
    for platform in tool.packages:
        assert f'"${{{tool.sum_key(platform)}}}"' in DOCKERFILE, f"{tool.name} {platform} is verified"
    assert 'sha256sum -c -' in DOCKERFILE and 'test -n "$2"' in DOCKERFILE


def test_azure_cli_comes_pinned_from_microsofts_signed_repository_and_python_brings_venv():
    assert '"azure-cli=${AZURE_CLI_VERSION}-1~bookworm"' in DOCKERFILE
    assert "signed-by=/usr/share/keyrings/microsoft.gpg] https://packages.microsoft.com/repos/azure-cli/" in DOCKERFILE
    assert re.search(r"\spython3 python3-venv\s", DOCKERFILE)
    assert re.search(r'case "\$\{TARGETARCH\}" in \\\n\s+amd64 \| arm64\)', DOCKERFILE), "az: amd64 and arm64 only"
    assert build.AZURE_CLI_PLATFORMS == ("linux/amd64", "linux/arm64")
    apt = re.search(r"apt-get install -y --no-install-recommends \\\n(.*?)\n &&", DOCKERFILE, re.S).group(1).split()
    assert {"curl", "git", "jq", "python3"} <= set(apt) and "/usr/local/bin/buildctl" in DOCKERFILE
    pulumi = next(t for t in build.TOOLS if t.name == "pulumi")
    assert set(pulumi.packages) == {"linux/amd64", "linux/arm64"}, "Pulumi publishes no armv7 CLI"


def test_a_lock_without_tool_checksums_is_refused_naming_them():
    lock = {**build.read_lock(), "KUBECTL_SHA256_LINUX_ARM_V7": ""}
    with pytest.raises(build.BuildError, match="KUBECTL_SHA256_LINUX_ARM_V7.*agents.lock-tools"):
        build.tool_build_args(lock, ["linux/arm/v7"])
    complete = {**lock, **{k: "1" * 64 for k in lock if k.endswith(("AMD64", "ARM64", "ARM_V7"))}}
    assert "PULUMI_SHA256_LINUX_ARM_V7" not in build.tool_build_args(complete, list(build.PLATFORMS))


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_tool_state_lives_on_the_pods_writable_volumes(plan, cluster, arch):
    container = agent_container(plan, cluster, arch)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod(plan, cluster, arch)["spec"]["volumes"]}
    writable = [m["mountPath"] for m in container["volumeMounts"]
                if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]]
    env = dockerfile_env()
    for name in STATE_ENV:
        assert any(env[name] == path or env[name].startswith(f"{path}/") for path in writable), name


@pytest.fixture
def published():
    """A stand-in for the download sites: path -> body; unknown paths answer 404."""
    pages = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write((body or "not found").encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield pages, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_lock_tools_reads_each_projects_published_checksums(published, tmp_path, monkeypatch):
    pages, base = published
    lock = build.read_lock()
    pulumi, kubectl, kubelogin = (lock[t.version_key] for t in build.TOOLS)
    pages[f"/releases/sdk/pulumi-{pulumi}-checksums.txt"] = (
        f"{'a' * 64}  pulumi-v{pulumi}-linux-x64.tar.gz\n{'b' * 64}  pulumi-v{pulumi}-linux-arm64.tar.gz\n"
        f"{'e' * 64}  pulumi-v{pulumi}-darwin-arm64.tar.gz\n")
    for arch, digit in (("amd64", "1"), ("arm64", "2"), ("arm", "3")):
        pages[f"/release/v{kubectl}/bin/linux/{arch}/kubectl.sha256"] = digit * 64
    for arch, digit in (("amd64", "4"), ("arm64", "5"), ("armv7", "6")):
        pages[f"/Azure/kubelogin/releases/download/v{kubelogin}/kubelogin-linux-{arch}.zip.sha256"] = (
            f"{digit * 64}  kubelogin-linux-{arch}.zip\n")
    tools = tuple(build.Tool(t.name, t.packages, re.sub(r"https://[^/]+", base, t.checksums), t.listing)
                  for t in build.TOOLS)
    monkeypatch.setattr(build, "TOOLS", tools)
    sums = build.published_tool_checksums(lock)
    assert sums["PULUMI_SHA256_LINUX_ARM64"] == "b" * 64 and sums["KUBECTL_SHA256_LINUX_ARM_V7"] == "3" * 64
    assert sums["KUBELOGIN_SHA256_LINUX_ARM_V7"] == "6" * 64 and len(sums) == 8
    copy = tmp_path / "agent.lock"
    shutil.copy(build.LOCK_FILE, copy)
    build.update_lock(sums, copy)
    updated = build.read_lock(copy)
    assert updated["PULUMI_SHA256_LINUX_AMD64"] == "a" * 64 and updated["AGENT_VERSION"] == lock["AGENT_VERSION"]
    assert copy.read_text().splitlines()[0] == build.LOCK_FILE.read_text().splitlines()[0]
    del pages[f"/release/v{kubectl}/bin/linux/arm/kubectl.sha256"]
    with pytest.raises(build.BuildError, match="kubectl.sha256"):
        build.published_tool_checksums(lock)


def fake_python(bin_dir: Path, has_venv: bool) -> None:
    """python3 as the image has it (3.11; with or without the venv module); the venv it makes runs nothing."""
    (bin_dir / "python3").write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *"import ensurepip, venv"*) exit %d ;;\n'
        '  "-m venv "*) mkdir -p "$3/bin" && printf \'#!/bin/sh\\nexit 0\\n\' >"$3/bin/python" '
        '&& chmod +x "$3/bin/python" ;;\n'
        "  *) exit 0 ;;\n"
        "esac\n" % (0 if has_venv else 1))
    for name in ("sudo", "apt-get"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >>"$KIT_PRIVILEGED_LOG"\nexit 1\n')
    for path in bin_dir.iterdir():
        path.chmod(0o755)


@pytest.mark.parametrize("has_venv", [True, False])
def test_kit_needs_no_apt_or_sudo_where_python_has_venv(tmp_path, has_venv):
    root, bin_dir = tmp_path / "checkout", tmp_path / "bin"
    root.mkdir(), bin_dir.mkdir()
    shutil.copy(REPO / "kit", root / "kit")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    fake_python(bin_dir, has_venv)
    log = tmp_path / "privileged.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "KIT_PRIVILEGED_LOG": str(log), "HOME": str(tmp_path)}
    result = subprocess.run(["sh", str(root / "kit"), "--list"], env=env, capture_output=True, text=True, timeout=60)
    if has_venv:
        assert result.returncode == 0, result.stderr
        assert not log.exists(), "the image's python3-venv spares ./kit apt and sudo"
    else:  # the same ./kit on a host without the venv module would need them: the check can fail
        assert "apt-get" in log.read_text()
