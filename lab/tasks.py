"""Invoke tasks of the `lab` collection: lab.up and lab.down (need root), lab.programs. The lab itself loads inside
the tasks."""
from invoke import Collection, Exit, task

DEFAULT_OUT = "out/lab"


@task(help={"hosts": "number of simulated edge hosts (1-100)",
            "servers": "how many of them are k3s servers (the first ones)",
            "out": "directory for site.yaml, known_hosts, id_ed25519 and state.json"})
def up(c, hosts=3, servers=1, out=DEFAULT_OUT):
    """Boot simulated edge hosts (namespaces running sshd) and write their inventory (root)."""
    from lab.lifecycle.lab import Lab, LabError
    from lab.lifecycle.packages import ensure_packages

    try:
        ensure_packages()
        lab = Lab.up(hosts=int(hosts), servers=int(servers), out_dir=out)
    except (LabError, RuntimeError) as err:
        raise Exit(f"lab.up: {err}", code=2)
    for h in lab.hosts:
        print(f"{h.name:10} {h.role:7} {h.address}")
    print(f"inventory: {lab.site_file}")


@task(help={"out": "directory the lab was brought up with"})
def down(c, out=DEFAULT_OUT):
    """Stop the lab's hosts and remove their namespaces, bridge and files (root)."""
    from lab.lifecycle.lab import Lab, LabError

    try:
        lab = Lab.load(out)
    except LabError as err:
        raise Exit(f"lab.down: {err}", code=2)
    lab.down()
    print(f"lab {lab.number} is down")


@task
def programs(c):
    """Build the lab's real Kubernetes programs, etcd and Flux once per machine into a cache (reused later)."""
    from lab.programs.build import BuildError, ensure_programs

    try:
        built = ensure_programs()
    except BuildError as err:
        raise Exit(f"lab.programs: {err}", code=2)
    for name, path in built.items():
        print(f"{name:24} {path}")


ns = Collection("lab")
ns.add_task(up)
ns.add_task(down)
ns.add_task(programs)
