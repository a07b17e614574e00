"""`k3s kubectl ...`: sends the command to the API named by the kubeconfig (client cert auth)."""
import base64
import json
import os
import ssl
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

from k3sstub.settings import KUBECONFIG


def _context(user: dict, ca_data: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=base64.b64decode(ca_data).decode())
    context.check_hostname = False
    with tempfile.TemporaryDirectory() as tmp:   # mode 0700; the key file lives only briefly
        cert, key = Path(tmp, "c.crt"), Path(tmp, "c.key")
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(mode=0o600)
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        context.load_cert_chain(cert, key)
    return context


def _read_stdin(args: list[str]) -> str:
    for i, arg in enumerate(args):
        source = arg.split("=", 1)[1] if arg.startswith(("-f=", "--filename=")) else (
            args[i + 1] if arg in ("-f", "--filename") and i + 1 < len(args) else None)
        if source == "-":
            return sys.stdin.read()
        if source:
            try:
                return Path(source).read_text()
            except OSError as err:
                print(f'error: the path "{source}" does not exist: {err.strerror}', file=sys.stderr)
                raise SystemExit(1)
    return ""


def run(args: list[str]) -> int:
    path = Path(os.environ.get("KUBECONFIG") or KUBECONFIG)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as err:
        print(f"error: error loading config file \"{path}\": {err.strerror}", file=sys.stderr)
        return 1
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    body = json.dumps({"args": args, "stdin": _read_stdin(args)}).encode()
    request = urllib.request.Request(cluster["server"] + "/v1-lab/kubectl", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        context = _context(user, cluster["certificate-authority-data"])
        with urllib.request.urlopen(request, context=context, timeout=3600) as reply:
            result = json.loads(reply.read())
    except OSError as err:
        host = cluster["server"].split("//", 1)[1]
        print(f"The connection to the server {host} was refused - did you specify the right "
              f"host or port? ({err})", file=sys.stderr)
        return 1
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    return result["code"]
