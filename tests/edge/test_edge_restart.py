"""Readiness after a restart is judged on the new instance: right after `systemctl restart --no-block` the old one
still answers is-active (systemd runs the queued job at idle priority), so the kit waits for another InvocationID."""
import pytest

from edge_hosts.access.ssh import HostSession
from edge_hosts.engine.context import HostContext
from edge_hosts.facts.probe import Facts
from edge_hosts.inventory.load import load_inventory
from edge_hosts.steps import service
from tests.lab.test_systemd_standin import SERVICE, UNIT

HOST = "edge-2"   # an agent: its unit is k3s-agent


@pytest.fixture
def ctx(lab_factory):
    lab = lab_factory(hosts=2, servers=1)
    host = lab.host(HOST)
    binary = host.path_on_host("/usr/local/bin/lab-service")
    binary.write_text(SERVICE)
    binary.chmod(0o755)
    host.path_on_host("/etc/systemd/system/k3s-agent.service").write_text(
        UNIT.format(type="notify", timeout="0", restart="always", restart_sec="1s", name="kit-restart"))
    lab.exec(HOST, "touch /tmp/kit-restart.go; systemctl start k3s-agent")
    inventory = load_inventory(str(lab.site_file))
    session = HostSession(inventory, inventory.host(HOST))
    yield lab, HostContext(inventory, inventory.host(HOST), session, source=None, facts=Facts({"active": "yes"}))
    session.close()


def test_a_restarted_unit_is_ready_only_once_its_new_instance_is(ctx):
    lab, context = ctx
    lab.exec(HOST, "rm /tmp/kit-restart.go")   # the new instance never reports ready
    service.start(context, restart=True)
    assert context.facts["old_invocation"]
    assert not service.wait_active(context, 4)  # the old instance answering is-active is not the restarted one
    lab.exec(HOST, "touch /tmp/kit-restart.go")
    assert service.wait_active(context, 20)


def test_a_plain_start_of_a_stopped_unit_is_ready_once_active(ctx):
    lab, context = ctx
    lab.exec(HOST, "systemctl stop k3s-agent")
    service.start(context, restart=False)
    assert context.facts["old_invocation"] == "" and service.wait_active(context, 20)
