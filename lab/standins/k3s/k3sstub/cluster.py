"""Cluster state held by the first server: nodes and applied objects, persisted across restarts."""
import hashlib
import json
import secrets
import threading
import time

from k3sstub.settings import TIMINGS, VERSION, state_file

SAVED = ("nodes", "objects", "metallb_applied_at", "bootstrap", "generation")


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _taint(text: str) -> dict:
    """'key=value:Effect' (or 'key:Effect') as a Node taint."""
    head, _, effect = text.rpartition(":")
    key, _, value = head.partition("=")
    return {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}


class Cluster:
    """Nodes and objects, the bootstrap data (the CA, encrypted with the server token) and the etcd membership
    generation (new at every cluster reset); every change is written to the datastore file (state_file)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.nodes: dict[str, dict] = {}
        self.objects: dict[str, dict] = {}      # "Kind/namespace/name" -> object
        self.metallb_applied_at: float | None = None
        self.bootstrap: dict | None = None
        self.generation = secrets.token_hex(8)
        self.heartbeats: dict[str, float] = {}
        path = state_file()
        if path.exists():
            self.load(json.loads(path.read_text()))

    def load(self, saved: dict) -> None:
        self.nodes, self.objects = saved["nodes"], saved["objects"]
        self.metallb_applied_at = saved.get("metallb_applied_at")
        self.bootstrap = saved.get("bootstrap")
        self.generation = saved.get("generation") or self.generation

    def dump(self) -> dict:
        return {key: getattr(self, key) for key in SAVED}

    def save(self) -> None:
        path = state_file()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        with self.lock:
            tmp.write_text(json.dumps(self.dump()))
        tmp.replace(path)

    # --- nodes -----------------------------------------------------------------------------
    def register(self, info: dict, password: str) -> bool:
        """A node (re)joins; False when its node password does not match the one kept for its name.

        Labels and taints are only set when the node is new (like k3s)."""
        name, now = info["name"], time.time()
        with self.lock:
            if not self._node_password_ok(name, password):
                return False
            self.heartbeats[name] = now
            node = self.nodes.get(name)
            if node is None:
                node = self.nodes[name] = {"registered": now, "labels": self._labels(info),
                                           "taints": [_taint(t) for t in info.get("taints", [])]}
            node.update(address=info["address"], version=info.get("version", VERSION),
                        started=now, unschedulable=node.get("unschedulable", False),
                        arch=node.get("arch", info["arch"]))
            self.save()
            return True

    def _node_password_ok(self, name: str, password: str) -> bool:
        """k3s keeps a hash of each node's password in the kube-system secret <node>.node-password.k3s: the
        first join creates it, a later join must present the same password (k3s pkg/nodepassword; k3s uses
        scrypt, the lab sha256)."""
        key = f"Secret/kube-system/{name}.node-password.k3s"
        digest = hashlib.sha256(password.encode()).hexdigest()
        secret = self.objects.get(key)
        if secret is not None:
            return secret["data"]["hash"] == digest
        self.objects[key] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
                             "metadata": {"name": f"{name}.node-password.k3s", "namespace": "kube-system",
                                          "creationTimestamp": _stamp(time.time())},
                             "data": {"hash": digest}}
        return True

    def _labels(self, info: dict) -> dict:
        labels = {"kubernetes.io/hostname": info["name"], "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": info["arch"], "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": info["arch"], "node.kubernetes.io/instance-type": "k3s"}
        if info["role"] == "server":
            labels.update({"node-role.kubernetes.io/control-plane": "true",
                           "node-role.kubernetes.io/master": "true"})
            if info.get("etcd"):
                labels["node-role.kubernetes.io/etcd"] = "true"
        for item in info.get("labels", []):
            key, _, value = str(item).partition("=")
            labels[key] = value
        return labels

    def heartbeat(self, name: str) -> bool:
        with self.lock:
            if name not in self.nodes:
                return False
            self.heartbeats[name] = time.time()
            return True

    def delete_node(self, name: str) -> bool:
        """Remove a node; its node-password secret goes too (k3s gives the secret an OwnerReference to the
        node, so the garbage collector removes it: k3s pkg/nodepassword/controller.go)."""
        with self.lock:
            found = self.nodes.pop(name, None) is not None
            self.heartbeats.pop(name, None)
            if found:
                self.objects.pop(f"Secret/kube-system/{name}.node-password.k3s", None)
            self.save()
            return found

    def is_ready(self, name: str) -> bool:
        node, now = self.nodes[name], time.time()
        seen = self.heartbeats.get(name, 0)
        return (now - node["started"] >= TIMINGS["node_ready"]
                and now - seen <= TIMINGS["node_lost"])

    def node_object(self, name: str) -> dict:
        node = self.nodes[name]
        ready = self.is_ready(name)
        spec = {"podCIDR": "10.42.0.0/24", "providerID": f"k3s://{name}"}
        taints = list(node["taints"])
        if node.get("unschedulable"):
            spec["unschedulable"] = True
            taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
        if taints:
            spec["taints"] = taints
        condition = {"type": "Ready", "status": "True" if ready else "False",
                     "reason": "KubeletReady" if ready else "KubeletNotReady",
                     "message": "kubelet is posting ready status" if ready
                     else "container runtime status check may not have completed yet",
                     "lastHeartbeatTime": _stamp(self.heartbeats.get(name, node["started"]))}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": node["labels"],
                             "creationTimestamp": _stamp(node["registered"])},
                "spec": spec,
                "status": {"conditions": [condition],
                           "addresses": [{"type": "InternalIP", "address": node["address"]},
                                         {"type": "Hostname", "address": name}],
                           "nodeInfo": {"kubeletVersion": node["version"],
                                        "kubeProxyVersion": node["version"],
                                        "architecture": node.get("arch", "amd64"), "operatingSystem": "linux",
                                        "containerRuntimeVersion": "containerd://1.7.23-k3s2"}}}

    def node_list(self) -> dict:
        with self.lock:
            items = [self.node_object(name) for name in sorted(self.nodes)]
        return {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items}
