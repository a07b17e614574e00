"""The real entrypoint (bash, as UID 10001) against the REST stand-in and a stand-in agent."""
import base64
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.agents_runtime.azdo_standin import package_tarball
from tests.agents_runtime.conftest import GOOD_TOKEN
from tests.lab.exec_audit import ExecAudit
from tests.agents_runtime.entrypoint_harness import STANDIN_AGENT, AgentContainer, ProcWatch, read_proc


@pytest.fixture
def container(standin):
    made = []

    def make(**kwargs) -> AgentContainer:
        kwargs.setdefault("token", GOOD_TOKEN)
        made.append(AgentContainer(standin.org_url, describe=standin.state.describe, **kwargs))
        return made[-1]

    yield make
    for box in made:
        box.stop()


def _listening(box, standin):
    box.start()
    box.wait_for(lambda: box.probe("ready").returncode == 0, what="readiness")
    return standin.state.agent_named(box.env["AZP_AGENT_NAME"])


def test_registers_and_listens_with_a_read_only_package(container, standin):
    box = container()
    agent = _listening(box, standin)
    assert agent is not None and agent["status"] == "online"
    assert box.probe("live").returncode == 0
    assert (box.home / ".agent").is_file() and (box.home / ".env").is_file()
    assert not (box.agent_dir / ".agent").exists()
    assert (box.home / "externals").is_symlink()
    listener_args = (box.home / "_diag" / "Agent_args.log").read_text()
    assert "--replace" in listener_args and "--once" in listener_args


def test_a_listener_reconnecting_is_not_ready_until_it_is_back(container, standin):
    box = container()
    _listening(box, standin)
    standin.state.unavailable = True
    box.wait_for(lambda: "phase is reconnecting" in box.probe("ready").stderr, what="not ready while reconnecting")
    assert box.probe("live").returncode == 0  # the entrypoint still beats: not restarted for a network blip
    standin.state.unavailable = False
    box.wait_for(lambda: box.probe("ready").returncode == 0, what="ready again once reconnected")
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0


def test_takes_one_job_then_deregisters_and_exits_zero(container, standin):
    box = container()
    _listening(box, standin)
    standin.state.jobs.append({"id": 1, "name": "build", "seconds": 0.3})
    assert box.wait_exit() == 0
    assert "Job build completed with result: Succeeded" in box.log
    assert standin.state.agent_named("agent-pod-1") is None


def test_sigterm_during_a_job_lets_it_finish_then_deregisters(container, standin):
    box = container()
    _listening(box, standin)
    standin.state.jobs.append({"id": 2, "name": "long", "seconds": 2})
    box.wait_for_log("Running job: long")
    box.signal(signal.SIGTERM)
    box.wait_for(lambda: box.probe("ready").returncode != 0, what="not ready while draining")
    assert box.wait_exit() == 0
    assert "Job long completed with result: Succeeded" in box.log
    assert "Canceled" not in box.log
    assert standin.state.agent_named("agent-pod-1") is None
    agent_id = int(box.home.joinpath(".agent").read_text().split('"agentId":')[1].split(",")[0])
    agent_path = f"/contoso/_apis/distributedtask/pools/7/agents/{agent_id}"
    assert [(p, b) for m, p, b in standin.state.bodies if m == "PATCH"] == [
        (agent_path, {"id": agent_id, "enabled": False})], "the agent was not disabled before draining"
    calls = [m for t, m, p in standin.state.timeline if p == agent_path]
    assert calls == ["PATCH", "DELETE"]  # disabled while the job ran, removed after it


def test_sigterm_when_idle_stops_the_listener_and_deregisters(container, standin):
    box = container()
    _listening(box, standin)
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0
    assert standin.state.agent_named("agent-pod-1") is None
    leftovers = [read_proc(pid, "cmdline") for pid in box.agent_processes()]
    assert leftovers == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_stop_works_when_the_parent_ignores_sigint_and_sigterm(container, standin, stop):
    """A background job of a non-interactive shell (as CI ran the suite) starts with SIGINT ignored, and bash
    can neither trap nor reset it: the listener ignored the idle stop's SIGINT until the 30 s SIGKILL."""
    box = container(ignored_signals=(signal.SIGINT, signal.SIGTERM))
    _listening(box, standin)
    box.signal(stop)
    assert box.wait_exit() == 0
    assert "stopping the idle listener" in box.log and "deregistered" in box.log
    assert standin.state.agent_named("agent-pod-1") is None and box.agent_processes() == []


def test_a_stop_sent_as_the_listener_starts_still_reaches_it(container, standin):
    """A stop before setsid has run: the listener's group does not exist yet; the stop must still reach it."""
    box = container(shims={"setsid": "sleep 1\nexec /usr/bin/setsid \"$@\""})
    box.start()
    box.wait_for(lambda: box.phase() == "starting", what="the listener starting")
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0
    assert standin.state.agent_named("agent-pod-1") is None and box.agent_processes() == []


def test_a_timeout_shows_the_process_tree_and_the_standins_state(container, standin):
    box = container()
    _listening(box, standin)
    with pytest.raises(AssertionError) as timeout:
        box.wait_exit(timeout=0.5)
    report = str(timeout.value)
    for shown in ("PID  PPID  PGID STAT", "IGNORED", "Agent.Listener run --once", "phase: listening",
                  "'name': 'agent-pod-1', 'status': 'online'"):
        assert shown in report, report


def test_a_refused_removal_is_retried(container, standin):
    standin.state.refuse_removals = 2
    box = container()
    _listening(box, standin)
    box.signal(signal.SIGINT)
    assert box.wait_exit() == 0
    assert "removal refused (attempt 2 of" in box.log
    assert standin.state.agent_named("agent-pod-1") is None


def test_an_agent_already_removed_by_someone_else_counts_as_deregistered(container, standin):
    box = container()
    agent = _listening(box, standin)
    with standin.state.lock:
        del standin.state.agents[7][agent["id"]]  # e.g. ./kit agents.cleanup, or the pool deleted it
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0
    assert "deregistered" in box.log and "removal refused" not in box.log
    assert len(_delete_times(standin)) == 1


def test_removal_that_never_succeeds_exits_non_zero(container, standin):
    standin.state.refuse_removals = 99
    box = container(AZP_REMOVE_ATTEMPTS="2")
    _listening(box, standin)
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 1
    assert "could not deregister" in box.log


def test_the_credential_never_reaches_the_agent_argv_env_or_logs(container, standin):
    box = container()
    _listening(box, standin)
    pids = box.agent_processes()
    assert len(pids) >= 3  # entrypoint, output follower, run.sh, listener
    token = GOOD_TOKEN.encode()
    listener = [p for p in pids if b"Agent.Listener\0run" in read_proc(p, "cmdline")]
    assert listener, "listener process not found"
    assert b"agent.disableupdate=true" in read_proc(listener[0], "environ").split(b"\0")
    for pid in pids:
        assert token not in read_proc(pid, "cmdline")
        assert token not in read_proc(pid, "environ")
    box.signal(signal.SIGTERM)
    box.wait_exit()
    assert GOOD_TOKEN not in box.log
    assert GOOD_TOKEN not in (box.home / "_diag" / "Agent_args.log").read_text()
    assert GOOD_TOKEN not in (box.home / ".env").read_text()


def test_the_credential_never_reaches_any_execs_argv_even_a_short_lived_curls(container, standin):
    """Every exec through PATH recorded (curl lives milliseconds: the process sampler above cannot see it): neither
    the PAT nor its base64 `Authorization: Basic` form is in any argv; curl reads that header from stdin."""
    root = Path(tempfile.mkdtemp(prefix="exec-audit-"))  # reachable by the agent's user (tmp_path is not)
    audit = ExecAudit(root)
    box = container(**audit.env)
    try:
        _listening(box, standin)
        box.signal(signal.SIGTERM)
        box.wait_exit()
    finally:
        argvs = audit.argvs()
        shutil.rmtree(root)
    assert {b"curl", b"base64"} <= {argv[0] for argv in argvs}  # the audit saw the API calls
    forms = [GOOD_TOKEN.encode(), base64.b64encode(f":{GOOD_TOKEN}".encode()),
             base64.b64encode(GOOD_TOKEN.encode()), b"Authorization"]
    leaked = [argv for argv in argvs if any(form in arg for arg in argv for form in forms)]
    assert leaked == []


@pytest.mark.parametrize("machine, platform", [
    ("x86_64", "linux-x64"), ("aarch64", "linux-arm64"), ("armv7l", "linux-arm")])
def test_downloads_the_package_for_the_architecture(container, standin, machine, platform):
    standin.state.packages[platform] = package_tarball(STANDIN_AGENT)
    box = container(with_package=False, machine=machine)
    _listening(box, standin)
    asked = [q["platform"] for m, p, q in standin.state.requests if p.endswith("/packages/agent")]
    assert asked == [platform]
    assert not (box.home / "externals").is_symlink()


def test_an_architecture_without_a_package_is_refused(container, standin):
    box = container(with_package=False, machine="s390x").start()
    assert box.wait_exit() == 1
    assert "no Azure Pipelines agent package for the architecture s390x" in box.log


def test_bad_settings_are_all_reported_with_exit_code_2(container, standin):
    box = container(AZP_URL="", AZP_AUTH="kerberos")
    box.token_file.unlink()
    assert box.start().wait_exit() == 2
    assert "AZP_URL is not set" in box.log and "AZP_AUTH='kerberos'" in box.log
    assert "is missing, unreadable or empty" in box.log


def test_an_expired_pat_fails_registration_without_showing_it(container, standin):
    standin.state.expired_tokens.add("expired-pat-value")
    box = container(token="expired-pat-value").start()
    assert box.wait_exit() == 1
    assert "registration failed" in box.log and "expired-pat-value" not in box.log


def test_workload_identity_registers_with_an_entra_token(container, standin):
    box = container(token="unused", AZP_AUTH="workload-identity", AZURE_CLIENT_ID="app-1",
                    AZURE_TENANT_ID="tenant-1",
                    AZURE_AUTHORITY_HOST=standin.org_url.rsplit("/", 1)[0] + "/_entra/")
    box.token_file.write_text(standin.state.federated_assertion)
    box.env["AZURE_FEDERATED_TOKEN_FILE"] = str(box.token_file)
    agent = _listening(box, standin)
    assert agent["status"] == "online"
    entra = [p for m, p, q in standin.state.requests if p.startswith("/_entra/tenant-1/")]
    assert entra == ["/_entra/tenant-1/oauth2/v2.0/token"]
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0
    assert standin.state.federated_assertion not in box.log


def test_service_principal_registers_with_an_entra_token_from_the_secret_file(container, standin):
    authority = standin.org_url.rsplit("/", 1)[0] + "/_entra/"
    box = container(token="sp-client-secret", AZP_AUTH="sp", AZP_CLIENT_ID="app-2",
                    AZP_TENANT_ID="tenant-2", AZURE_AUTHORITY_HOST=authority)
    assert _listening(box, standin)["status"] == "online"
    assert "entra-access-token-for-app-2" in standin.state.valid_tokens
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0
    assert "sp-client-secret" not in box.log and "entra-access-token" not in box.log


def _delete_times(standin) -> list[float]:
    return [t for t, m, p in standin.state.timeline if m == "DELETE" and "/agents/" in p]


def test_deregistration_backs_off_doubling_up_to_the_cap(container, standin):
    standin.state.refuse_removals = 3
    box = container(AZP_REMOVE_MAX_DELAY="2")
    _listening(box, standin)
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0
    delays = [int(line.rsplit("retrying in ", 1)[1].rstrip("s\n")) for line in box.output if "retrying in " in line]
    assert delays == [1, 2, 2]
    times = _delete_times(standin)
    assert len(times) == 4 and standin.state.agent_named("agent-pod-1") is None
    # each retry comes at least its announced delay after the refusal (sleep never returns early)
    assert all(later - earlier >= delay for earlier, later, delay in zip(times, times[1:], delays)), times


def test_no_wait_after_the_last_refused_attempt(container, standin):
    standin.state.refuse_removals = 99
    box = container(AZP_REMOVE_ATTEMPTS="3")
    _listening(box, standin)
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 1
    assert len(_delete_times(standin)) == 3
    assert box.log.count("retrying in ") == 2 and "removal refused (attempt 3 of 3)\n" in box.log


@pytest.mark.parametrize("auth", ["pat", "sp"])
def test_the_credential_never_reaches_any_process_while_draining_and_deregistering(container, standin, auth):
    secret = GOOD_TOKEN if auth == "pat" else "sp-client-secret"
    extra = {} if auth == "pat" else {"AZP_CLIENT_ID": "app-2", "AZP_TENANT_ID": "tenant-2",
                                      "AZURE_AUTHORITY_HOST": standin.org_url.rsplit("/", 1)[0] + "/_entra/"}
    standin.state.refuse_removals = 2  # deregistration lasts a few seconds, watched throughout
    box = container(token=secret, AZP_AUTH=auth, **extra)
    _listening(box, standin)
    standin.state.jobs.append({"id": 3, "name": "watched", "seconds": 1.5})
    box.wait_for_log("Running job: watched")
    with ProcWatch(box, secret) as watch:
        box.signal(signal.SIGTERM)
        assert box.wait_exit() == 0
    assert standin.state.agent_named("agent-pod-1") is None
    assert watch.phases.get("draining") and watch.phases.get("deregistering"), watch.phases
    assert watch.leaks == []
    if auth == "sp":  # the access tokens made from it stay out of every process too
        assert not any(b"entra-access-token" in read_proc(pid, "environ") for pid in box.agent_processes())


@pytest.mark.parametrize("auth", ["pat", "sp"])
def test_no_file_a_job_can_read_holds_the_credential_once_the_listener_runs(container, standin, auth):
    secret = GOOD_TOKEN if auth == "pat" else "sp-client-secret"
    extra = {} if auth == "pat" else {"AZP_CLIENT_ID": "app-2", "AZP_TENANT_ID": "tenant-2",
                                      "AZURE_AUTHORITY_HOST": standin.org_url.rsplit("/", 1)[0] + "/_entra/"}
    box = container(token=secret, AZP_AUTH=auth, **extra)
    _listening(box, standin)
    assert not box.token_file.exists()
    holding = [path for path in box.root.rglob("*")
               if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes()]
    assert holding == []
    box.signal(signal.SIGTERM)
    assert box.wait_exit() == 0 and standin.state.agent_named("agent-pod-1") is None


def test_a_credential_on_a_read_only_secret_mount_is_refused(container, standin):
    box = container(secret_mount=True).start()
    assert box.wait_exit() == 2
    assert "cannot be deleted" in box.log and "pipeline jobs would be able to read it" in box.log
    assert GOOD_TOKEN not in box.log
    assert standin.state.requests == [] and box.token_file.exists()
