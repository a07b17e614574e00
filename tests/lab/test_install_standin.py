"""The lab's install.sh behaves like k3s-io/k3s install.sh at every point the kit relies on: the unit (Type=notify
for servers and agents), enable by unit file path then daemon-reload, the 0600 env file with K3S_*, CONTAINERD_*
and proxy variables, SKIP_ENABLE / SKIP_START / FORCE_RESTART, skip-download (and with it SELinux setup)."""
import pytest

from lab.lifecycle.inventory import K3S_VERSION
from tests.lab.test_standins import _put

SCRIPT = "/usr/local/bin/k3s-install.sh"
RECORDER = """#!/bin/sh
echo "$*" >> /tmp/systemctl-calls
exec /usr/local/sbin/systemctl.lab "$@"
"""


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    lab = module_lab_factory(hosts=2, servers=1)
    release = lab.bundle / "k3s" / K3S_VERSION
    for host in ("edge-1", "edge-2"):
        _put(lab, host, "/usr/local/bin/k3s", (release / "k3s").read_bytes(), 0o755)
        _put(lab, host, SCRIPT, (release / "install.sh").read_bytes(), 0o755)
        sbin = lab.host(host).path_on_host("/usr/local/sbin")
        (sbin / "systemctl").rename(sbin / "systemctl.lab")
        (sbin / "systemctl").write_text(RECORDER)
        (sbin / "systemctl").chmod(0o755)
    return lab


def install(lab, host, env, check=True):
    return lab.exec(host, f"INSTALL_K3S_SKIP_DOWNLOAD=true {env} sh {SCRIPT}", check=check)


def calls(lab, host):
    path = lab.host(host).path_on_host("/tmp/systemctl-calls")
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


def test_server_unit_is_notify_enabled_by_path_then_reloaded_and_restarted(lab):
    out = install(lab, "edge-1", "INSTALL_K3S_EXEC='server --node-label=zone=a'").stdout
    assert "Skipping installation of SELinux RPM" in out        # skip-download skips SELinux setup too
    assert calls(lab, "edge-1")[-3:] == ["enable /etc/systemd/system/k3s.service", "daemon-reload", "restart k3s"]
    unit = lab.exec("edge-1", "cat /etc/systemd/system/k3s.service").stdout
    for line in ("Type=notify", "TimeoutStartSec=0", "Restart=always", "RestartSec=5s", "KillMode=process",
                 "Delegate=yes", "EnvironmentFile=-/etc/default/%N", "EnvironmentFile=-/etc/sysconfig/%N",
                 "EnvironmentFile=-/etc/systemd/system/k3s.service.env", "WantedBy=multi-user.target"):
        assert line in unit.splitlines()
    assert "ExecStart=/usr/local/bin/k3s \\\n    server \\\n\t'--node-label=zone=a' \\\n" in unit
    assert lab.exec("edge-1", "systemctl.lab is-active k3s").stdout.strip() == "active"
    rerun = install(lab, "edge-1", "INSTALL_K3S_EXEC='server --node-label=zone=a'").stdout
    assert "No change detected so skipping service start" in rerun
    assert "restart k3s" not in calls(lab, "edge-1")
    install(lab, "edge-1", "INSTALL_K3S_FORCE_RESTART=true INSTALL_K3S_EXEC='server --node-label=zone=a'")
    assert calls(lab, "edge-1")[-1] == "restart k3s"


def test_agent_unit_is_notify_too_and_skip_start_enables_without_starting(lab):
    server = lab.host("edge-1").address
    install(lab, "edge-2", f"INSTALL_K3S_SKIP_START=true K3S_URL=https://{server}:6443 K3S_TOKEN=t")
    unit = lab.exec("edge-2", "cat /etc/systemd/system/k3s-agent.service").stdout
    assert "Type=notify" in unit.splitlines() and "ExecStart=/usr/local/bin/k3s \\\n    agent \\\n\n" in unit
    recorded = calls(lab, "edge-2")
    assert recorded[-2:] == ["enable /etc/systemd/system/k3s-agent.service", "daemon-reload"]
    assert lab.exec("edge-2", "systemctl.lab is-enabled k3s-agent").stdout.strip() == "enabled"
    assert lab.exec("edge-2", "systemctl.lab is-active k3s-agent", check=False).stdout.strip() == "inactive"
    assert "k3s-agent-uninstall.sh" in lab.exec("edge-2", "ls /usr/local/bin").stdout


def test_skip_enable_leaves_the_unit_disabled_even_if_it_was_enabled(lab):
    install(lab, "edge-2", "INSTALL_K3S_SKIP_START=true INSTALL_K3S_EXEC=agent")
    assert lab.exec("edge-2", "systemctl.lab is-enabled k3s-agent").returncode == 0
    install(lab, "edge-2", "INSTALL_K3S_SKIP_ENABLE=true INSTALL_K3S_EXEC=agent")
    # upstream disables and removes the unit before writing it again, and SKIP_ENABLE skips enable and start
    assert lab.exec("edge-2", "systemctl.lab is-enabled k3s-agent", check=False).stdout.strip() == "disabled"
    assert not [c for c in calls(lab, "edge-2")[-1:] if c.startswith(("enable", "restart"))]


def test_env_file_is_private_and_holds_k3s_containerd_and_proxy_variables_only(lab):
    env = ("K3S_TOKEN=secret-token K3S_NODE_NAME=edge-2 CONTAINERD_HTTP_PROXY=http://proxy:3128 "
           "HTTP_PROXY=http://proxy:3128 https_proxy=http://proxy:3129 NO_PROXY=10.0.0.0/8 "
           "ALL_PROXY=socks5://proxy:1080 OTHER_SETTING=x INSTALL_K3S_SKIP_START=true INSTALL_K3S_EXEC=agent")
    install(lab, "edge-2", env)
    path = "/etc/systemd/system/k3s-agent.service.env"
    assert lab.exec("edge-2", f"stat -c %a {path}").stdout.strip() == "600"
    names = {line.split("=", 1)[0] for line in lab.exec("edge-2", f"cat {path}").stdout.splitlines()}
    assert names == {"K3S_TOKEN", "K3S_NODE_NAME", "CONTAINERD_HTTP_PROXY", "HTTP_PROXY", "https_proxy", "NO_PROXY"}
    assert "K3S_TOKEN='secret-token'" in lab.exec("edge-2", f"cat {path}").stdout


def test_bad_input_is_refused_like_upstream(lab):
    no_token = install(lab, "edge-2", "K3S_URL=https://10.0.0.1:6443", check=False)
    assert no_token.returncode == 1 and "K3S_TOKEN or K3S_TOKEN_FILE is not defined" in no_token.stderr
    http = install(lab, "edge-2", "K3S_URL=http://10.0.0.1:6443 K3S_TOKEN=t", check=False)
    assert http.returncode == 1 and "Only https:// URLs are supported for K3S_URL" in http.stderr
    lab.exec("edge-2", "mv /usr/local/bin/k3s /usr/local/bin/k3s.away")
    try:
        missing = install(lab, "edge-2", "INSTALL_K3S_EXEC=agent", check=False)
    finally:
        lab.exec("edge-2", "mv /usr/local/bin/k3s.away /usr/local/bin/k3s")
    assert missing.returncode == 1 and "Executable k3s binary not found at /usr/local/bin/k3s" in missing.stderr
