"""`k3s ctr -n k8s.io images import <archive>`: what the embedded containerd does with an image archive.

The stand-in checks the archive is an OCI image layout (oci-layout, index.json, every blob present and matching
its digest) and records the annotated image names in IMPORTED, one line each, as containerd would list them.
"""
import hashlib
import json
import sys
import tarfile

from k3sstub.settings import DATA_DIR

IMPORTED = DATA_DIR / "agent" / "containerd" / "lab-imported-images"
NAME_KEY = "io.containerd.image.name"


def run(args: list[str]) -> int:
    """Handle `ctr [-n NS] images import FILE`; anything else is not emulated."""
    if args[:2] == ["-n", "k8s.io"]:
        args = args[2:]
    if len(args) != 3 or args[:2] != ["images", "import"]:
        print(f"ctr (lab stand-in): only `-n k8s.io images import FILE` is emulated, not {args}", file=sys.stderr)
        return 1
    try:
        names = _image_names(args[2])
    except (OSError, KeyError, ValueError, tarfile.TarError) as err:
        print(f"ctr: failed to import {args[2]}: {err}", file=sys.stderr)
        return 1
    IMPORTED.parent.mkdir(parents=True, exist_ok=True)
    with open(IMPORTED, "a") as out:
        out.writelines(f"{name}\n" for name in names)
    for name in names:
        print(f"unpacking {name} ...done")
    return 0


def _image_names(path: str) -> list[str]:
    with tarfile.open(path) as archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
        if "oci-layout" not in members:
            raise ValueError("not an OCI image layout (no oci-layout)")
        for name, member in members.items():
            if name.startswith("blobs/sha256/"):
                digest = hashlib.sha256(archive.extractfile(member).read()).hexdigest()
                if digest != name.rsplit("/", 1)[1]:
                    raise ValueError(f"blob {name} does not match its digest")
        index = json.load(archive.extractfile(members["index.json"]))
    return [m["annotations"][NAME_KEY] for m in index["manifests"]]
