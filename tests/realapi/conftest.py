"""A real etcd + kube-apiserver per test module (lab/programs/apiserver.py, on free loopback ports), and the real
kubectl against it."""
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.programs.apiserver import ApiServer
from lab.programs.build import KUBERNETES, ensure_programs


@dataclass
class Kubectl:
    """The real kubectl (the lab's build, v1.37.2) bound to one API server's admin kubeconfig."""

    binary: Path
    kubeconfig: Path

    def run(self, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.binary), f"--kubeconfig={self.kubeconfig}", *args], input=stdin,
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def real_api(tmp_path_factory):
    """A running API server for the tests of one module; stopped (ports freed) after them."""
    with ApiServer.start(tmp_path_factory.mktemp("apiserver"), sans=("10.213.0.11", "edge-1")) as api:
        yield api


@pytest.fixture(scope="module")
def kubectl(real_api):
    return Kubectl(ensure_programs(programs=KUBERNETES)["kubectl"], real_api.kubeconfig)
