"""The lab's systemctl and journalctl behave like systemd's where the kit relies on them: enable by unit file path,
Type=notify (a start blocks until READY=1, --no-block returns at once), activating/active/failed states,
Restart=always, TimeoutStartSec, the unit's journal."""
import subprocess
import time

import pytest

from tests.lab.test_standins import wait_for

# a service that sends READY=1 on $NOTIFY_SOCKET once /tmp/<name>.go exists, or exits 1 once /tmp/<name>.die does
SERVICE = """#!/usr/bin/python3
import os, socket, sys, time
name = sys.argv[1]
print(f"{name} waiting", flush=True)
while not os.path.exists(f"/tmp/{name}.go"):
    if os.path.exists(f"/tmp/{name}.die"):
        print(f"{name} giving up", flush=True)
        sys.exit(1)
    time.sleep(0.05)
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
print(f"{name} ready", flush=True)
while True:
    time.sleep(1)
"""
UNIT = """[Unit]
Description=Lab test service
[Install]
WantedBy=multi-user.target
[Service]
Type={type}
TimeoutStartSec={timeout}
Restart={restart}
RestartSec={restart_sec}
ExecStart=/usr/local/bin/lab-service \\
    '{name}'
"""


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    lab = module_lab_factory(hosts=1, servers=1)
    target = lab.host("edge-1").path_on_host("/usr/local/bin/lab-service")
    target.write_text(SERVICE)
    target.chmod(0o755)
    return lab


def unit(lab, name, type="notify", timeout="0", restart="always", restart_sec="1s"):
    path = lab.host("edge-1").path_on_host(f"/etc/systemd/system/{name}.service")
    path.write_text(UNIT.format(type=type, timeout=timeout, restart=restart, name=name, restart_sec=restart_sec))
    return f"/etc/systemd/system/{name}.service"


def run(lab, command):
    return lab.exec("edge-1", command, check=False)


def state(lab, name):
    return run(lab, f"systemctl is-active {name}").stdout.strip()


def test_enable_by_unit_file_path_and_is_enabled(lab):
    path = unit(lab, "svc-enable")
    assert run(lab, "systemctl is-enabled svc-enable").stdout.strip() == "disabled"
    assert run(lab, "systemctl is-enabled svc-enable").returncode == 1
    enabled = run(lab, f"systemctl enable {path}")
    assert enabled.returncode == 0 and "Created symlink" in enabled.stderr
    assert run(lab, "systemctl is-enabled svc-enable.service").stdout.strip() == "enabled"
    assert run(lab, "systemctl disable svc-enable").returncode == 0
    assert run(lab, "systemctl is-enabled svc-enable").returncode == 1
    missing = run(lab, "systemctl is-enabled no-such-unit")
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr
    run(lab, f"systemctl enable {path}")
    # the sh fast path and systemctl.py answer alike
    for command in ("systemctl is-enabled svc-enable", "python3 /usr/local/sbin/systemctl.py is-enabled svc-enable",
                    "systemctl is-enabled --quiet svc-enable.service", "systemctl is-enabled no-such-unit",
                    "python3 /usr/local/sbin/systemctl.py is-enabled no-such-unit"):
        done = run(lab, command)
        assert (done.returncode, done.stdout, done.stderr) == {
            "svc-enable": (0, "enabled\n", ""), "svc-enable.service": (0, "", ""),
            "no-such-unit": (1, "", "Failed to get unit file state for no-such-unit.service: "
                                    "No such file or directory\n")}[command.split()[-1]]


def test_notify_start_blocks_until_ready(lab):
    unit(lab, "svc-notify")
    host = lab.host("edge-1")
    starter = subprocess.Popen([*host.nsenter(), "systemctl", "start", "svc-notify"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: "svc-notify waiting" in run(lab, "journalctl -u svc-notify -o cat").stdout)
        assert state(lab, "svc-notify") == "activating"
        assert run(lab, "systemctl is-active svc-notify").returncode == 3
        assert starter.poll() is None                 # the start job is still waiting for READY=1
        run(lab, "touch /tmp/svc-notify.go")
        assert starter.wait(timeout=30) == 0
    finally:
        starter.kill()
    assert state(lab, "svc-notify") == "active"
    show = run(lab, "systemctl show svc-notify -p ActiveState,SubState,NRestarts").stdout.split()
    assert show == ["ActiveState=active", "SubState=running", "NRestarts=0"]
    assert run(lab, "systemctl stop svc-notify").returncode == 0
    assert state(lab, "svc-notify") == "inactive"


def test_no_block_returns_at_once_and_the_unit_stays_activating(lab):
    unit(lab, "svc-noblock")
    assert run(lab, "systemctl start --no-block svc-noblock").returncode == 0
    assert state(lab, "svc-noblock") == "activating"
    assert wait_for(lambda: "svc-noblock waiting" in run(lab, "journalctl -u svc-noblock").stdout)
    assert state(lab, "svc-noblock") == "activating"   # no READY=1, no timeout (TimeoutStartSec=0)
    run(lab, "touch /tmp/svc-noblock.go")
    assert wait_for(lambda: state(lab, "svc-noblock") == "active")
    run(lab, "systemctl stop svc-noblock")


def test_exit_before_ready_fails_the_start_and_restart_always_starts_it_again(lab):
    unit(lab, "svc-dies")
    run(lab, "touch /tmp/svc-dies.die")
    failed = run(lab, "systemctl start svc-dies")
    assert failed.returncode == 1 and "Job for svc-dies.service failed" in failed.stderr
    assert wait_for(lambda: "restart counter is at 2" in run(lab, "journalctl -u svc-dies").stdout)
    journal = run(lab, "journalctl -u svc-dies -o cat").stdout
    assert "svc-dies.service: Main process exited, code=exited, status=1/FAILURE" in journal
    assert "Failed to start svc-dies.service - Lab test service." in journal
    starts = lab.host("edge-1").path_on_host("/var/log/lab-units/svc-dies.starts").read_text().splitlines()
    assert len(starts) >= 2
    assert state(lab, "svc-dies") == "activating"   # starting again or waiting RestartSec (auto-restart)
    run(lab, "systemctl stop svc-dies")
    assert state(lab, "svc-dies") == "inactive"


def test_a_start_job_on_a_unit_waiting_to_restart_starts_it_at_once(lab):
    unit(lab, "svc-kick", restart_sec="1h")
    run(lab, "touch /tmp/svc-kick.die")
    run(lab, "systemctl start --no-block svc-kick")
    sub = lambda: run(lab, "systemctl show svc-kick -p SubState --value").stdout.strip()
    assert wait_for(lambda: sub() == "auto-restart")
    run(lab, "rm /tmp/svc-kick.die; touch /tmp/svc-kick.go")
    assert run(lab, "systemctl start svc-kick").returncode == 0     # no hour-long wait for RestartSec
    assert state(lab, "svc-kick") == "active"
    assert run(lab, "systemctl show svc-kick -p NRestarts --value").stdout.strip() == "1"
    run(lab, "systemctl stop svc-kick")


def test_without_restart_an_exited_unit_is_failed_until_reset(lab):
    unit(lab, "svc-once", restart="no")
    run(lab, "touch /tmp/svc-once.die")
    assert run(lab, "systemctl start svc-once").returncode == 1
    assert wait_for(lambda: state(lab, "svc-once") == "failed")
    assert run(lab, "systemctl show svc-once -p Result --value").stdout.strip() == "exit-code"
    run(lab, "systemctl reset-failed svc-once")
    assert state(lab, "svc-once") == "inactive"


def test_a_start_timeout_fails_the_unit(lab):
    unit(lab, "svc-timeout", timeout="1s", restart="no")
    failed = run(lab, "systemctl start svc-timeout")
    assert failed.returncode == 1
    assert "start operation timed out" in run(lab, "journalctl -u svc-timeout").stdout
    assert run(lab, "systemctl show svc-timeout -p Result --value").stdout.strip() == "timeout"


def test_simple_units_are_active_once_started(lab):
    unit(lab, "svc-simple", type="simple")
    assert run(lab, "systemctl start svc-simple").returncode == 0
    assert state(lab, "svc-simple") == "active"
    run(lab, "systemctl stop svc-simple")


def test_journalctl_reads_the_unit_journal(lab):
    unit(lab, "svc-journal")
    run(lab, "touch /tmp/svc-journal.go")
    run(lab, "systemctl start svc-journal")
    lines = run(lab, "journalctl -u svc-journal.service -n 2 --no-pager").stdout.splitlines()
    assert len(lines) == 2 and all(line.split()[3] == "edge-1" for line in lines)
    assert any(line.endswith("svc-journal ready") for line in lines)
    cat = run(lab, "journalctl -u svc-journal -o cat --no-pager").stdout.splitlines()
    assert cat[0] == "Starting svc-journal.service - Lab test service..."
    assert "svc-journal ready" in cat and "Started svc-journal.service - Lab test service." in cat
    assert run(lab, "journalctl -u never-started --no-pager").stdout.strip() == "-- No entries --"
    refused = run(lab, "journalctl --since today -u svc-journal")
    assert refused.returncode == 1 and "unsupported" in refused.stderr
    run(lab, "systemctl stop svc-journal")


def test_after_a_reboot_enabled_units_start_and_disabled_ones_do_not(lab):
    unit(lab, "svc-boot-on")
    unit(lab, "svc-boot-off")
    run(lab, "touch /tmp/svc-boot-on.go /tmp/svc-boot-off.go")
    run(lab, "systemctl enable /etc/systemd/system/svc-boot-on.service")
    run(lab, "systemctl start svc-boot-on; systemctl start svc-boot-off")
    subprocess.Popen([*lab.host("edge-1").nsenter(), "setsid", "/usr/local/sbin/reboot"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: "reboot" in run(lab, "cat /var/log/lab-units/boots").stdout, timeout=30)
    assert wait_for(lambda: state(lab, "svc-boot-on") == "active", timeout=30)
    assert state(lab, "svc-boot-off") == "inactive"
    assert len(lab.host("edge-1").path_on_host("/var/log/lab-units/svc-boot-on.starts").read_text().split("\n")) == 3


def test_a_supervisor_pid_taken_by_another_process_is_not_the_unit(lab):
    """The lab's hosts share the machine's pids, which the kernel reuses: a unit whose supervisor died (a reboot
    kills it) is inactive even once its pid belongs to another process, and stop never signals that process."""
    unit(lab, "svc-stale", type="simple")
    assert run(lab, "systemctl start svc-stale").returncode == 0
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        path = lab.host("edge-1").path_on_host("/var/log/lab-units/svc-stale.state")
        run(lab, "systemctl stop svc-stale")
        fields = path.read_text().split() if path.exists() else \
            ["active", "running", "0", "0", "0", "success", "1"]
        fields[0:4] = ["active", "running", str(bystander.pid), "0"]  # what a killed supervisor leaves behind
        path.write_text(" ".join(fields) + "\n")
        for command in ("systemctl is-active svc-stale", "python3 /usr/local/sbin/systemctl.py is-active svc-stale"):
            done = run(lab, command)
            assert (done.returncode, done.stdout.strip()) == (3, "inactive"), command
        assert run(lab, "systemctl stop svc-stale").returncode == 0
        assert bystander.poll() is None                          # not signalled
    finally:
        bystander.kill()
        run(lab, "systemctl stop svc-stale")


def invocation(lab, name):
    return run(lab, f"systemctl show {name} -p InvocationID --value").stdout.strip()


def test_right_after_restart_no_block_the_old_instance_is_still_active_and_each_start_has_a_new_invocation(lab):
    """systemd queues the restart job and runs it at idle priority (src/core/manager.c), so is-active right after
    `restart --no-block` answers for the old instance; every start gets a new InvocationID (src/core/service.c)."""
    unit(lab, "svc-restart")
    run(lab, "touch /tmp/svc-restart.go; systemctl start svc-restart")
    old = invocation(lab, "svc-restart")
    assert len(old) == 32 and state(lab, "svc-restart") == "active"
    run(lab, "rm /tmp/svc-restart.go")                 # the next instance waits for READY=1
    after = run(lab, "systemctl restart --no-block svc-restart; systemctl is-active svc-restart; "
                     "systemctl show svc-restart -p InvocationID --value").stdout.split()
    assert after == ["active", old]                    # still the old instance
    assert wait_for(lambda: invocation(lab, "svc-restart") not in ("", old))
    assert state(lab, "svc-restart") == "activating"   # the new one is not ready
    new = invocation(lab, "svc-restart")
    run(lab, "touch /tmp/svc-restart.go")
    assert wait_for(lambda: state(lab, "svc-restart") == "active") and invocation(lab, "svc-restart") == new
    run(lab, "systemctl stop svc-restart")
    assert invocation(lab, "svc-restart") == new       # kept after the stop, as systemd shows the last one


def test_a_stop_cancels_a_queued_restart(lab):
    unit(lab, "svc-cancel")
    run(lab, "touch /tmp/svc-cancel.go; systemctl start svc-cancel")
    run(lab, "systemctl restart --no-block svc-cancel; systemctl stop svc-cancel")
    assert state(lab, "svc-cancel") == "inactive"
    time.sleep(2)   # past the job's dispatch: nothing starts it again
    assert state(lab, "svc-cancel") == "inactive"
