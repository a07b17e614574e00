"""The session's ordinary run() path redacts every known secret from what a remote command prints (an error line,
a failed script's echo), not only the RemoteError that check() raises."""
import pytest

from edge_hosts.access.ssh import HostSession, Result

SECRET = "pa55-w0rd-kit"


@pytest.fixture
def session(monkeypatch):
    """A session whose remote side echoes the secret on both streams (no connection needed)."""
    session = HostSession.__new__(HostSession)
    session.secrets, session.command_timeout = {SECRET}, 5
    monkeypatch.setattr(session, "_ensure_connected", lambda: None)
    monkeypatch.setattr(session, "_command", lambda sudo: ("sh -s", b""))
    monkeypatch.setattr(session, "_exchange", lambda command, stdin, timeout: Result(
        1, f"login {SECRET} ok\n", f"curl: bad credentials {SECRET}\n"))
    return session


def test_run_redacts_a_secret_echoed_on_stdout_and_stderr(session):
    result = session.run("echo")
    assert SECRET not in result.out and SECRET not in result.err
    assert result.out == "login *** ok\n" and result.err == "curl: bad credentials ***\n"


def test_reveal_returns_stdout_as_read_but_still_redacts_stderr(session):
    result = session.run("cat secret", reveal=True)
    assert result.out == f"login {SECRET} ok\n" and result.err == "curl: bad credentials ***\n"


def test_check_raises_with_the_secret_redacted(session):
    with pytest.raises(Exception) as err:
        session.check("echo", "logging in")
    assert SECRET not in str(err.value) and "bad credentials ***" in str(err.value)
