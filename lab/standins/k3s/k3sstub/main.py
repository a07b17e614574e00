"""Command dispatch of the stand-in k3s binary (also reached through kubectl/crictl/ctr links)."""
import sys

from k3sstub.settings import VERSION


def main(program: str, args: list[str]) -> int:
    if program == "kubectl":
        args = ["kubectl", *args]
    elif program in ("crictl", "ctr"):
        args = [program, *args]
    if not args or args[0] in ("--version", "-v", "version"):
        print(f"k3s version {VERSION} (lab stand-in)\ngo version go1.22.9")
        return 0
    command, rest = args[0], args[1:]
    if command == "kubectl":
        from k3sstub import client
        return client.run(rest)
    if command in ("ctr", "crictl"):
        from k3sstub import images
        return images.ctr(rest) if command == "ctr" else images.crictl(rest)
    if command in ("server", "agent"):
        from k3sstub import node
        return node.run_server(rest) if command == "server" else node.run_agent()
    if command == "etcd-snapshot":
        from k3sstub import snapshot
        return snapshot.run(rest)
    if command == "certificate" and rest[:1] == ["rotate"]:
        from k3sstub import pki
        return pki.rotate(rest[1:])
    print(f"k3s (lab stand-in): {command} is not emulated", file=sys.stderr)
    return 1
