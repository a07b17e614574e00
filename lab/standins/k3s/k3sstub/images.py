"""The embedded containerd's image store, as far as the kit relies on it.

- At start k3s imports every archive in the airgap images directory and labels the images
  io.cri-containerd.pinned=pinned (kubelet image GC skips pinned images) and io.cattle.k3s.pinned=pinned; images
  it pinned earlier lose both labels first, so those whose archive is gone stay unpinned (k3s
  pkg/agent/containerd/containerd.go preloadImages: clearLabels, then labelImages per file; tests/docker/autoimport);
  it then watches the directory and
  imports a new archive, or one whose size changed and whose mtime is newer (k3s pkg/agent/containerd/watcher.go),
  about 2 s after the change, also pinned.
- `k3s ctr -n k8s.io images import FILE` imports without that label (ctr's import has no label flag);
  `k3s ctr -n k8s.io images label REF k=v` sets labels; `images ls [-q]` lists REF TYPE DIGEST SIZE PLATFORMS LABELS.
- `k3s crictl images [-o json]` lists the CRI view with "pinned".
An archive must be an OCI image layout whose blobs match their digests; the lab's k3s airgap images placeholder
archives are accepted and hold no images. The store is STORE (JSON: ref -> digest, mediaType, size, labels).
"""
import hashlib
import json
import sys
import tarfile
import threading
import time

from k3sstub.settings import DATA_DIR, IMAGES_DIR, log

STORE = DATA_DIR / "agent" / "containerd" / "lab-images.json"
NAME_KEY = "io.containerd.image.name"
PINNED = {"io.cri-containerd.pinned": "pinned", "io.cattle.k3s.pinned": "pinned"}
# archive types k3s imports (.txt pre-pull lists need a registry: not emulated)
SUPPORTED = (".tar", ".tar.lz4", ".tar.bz2", ".tbz", ".tar.gz", ".tgz", ".tar.zst", ".tzst")
PLACEHOLDER = b"lab stand-in airgap images"
WATCH_DELAY = 2.0
_lock = threading.Lock()


def load() -> dict:
    try:
        return json.loads(STORE.read_text())
    except (OSError, ValueError):
        return {}


def _save(store: dict) -> None:
    STORE.parent.mkdir(parents=True, exist_ok=True)
    tmp = STORE.with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1, sort_keys=True))
    tmp.replace(STORE)


def import_archive(path, labels: dict) -> list[str]:
    """Import an archive into the store with `labels`; returns the image names. Raises ValueError etc."""
    path = str(path)
    with open(path, "rb") as head:
        if head.read(len(PLACEHOLDER)) == PLACEHOLDER:
            return []
    entries = _layout_entries(path)
    with _lock:
        store = load()
        for name, descriptor in entries.items():
            old = store.get(name, {})
            store[name] = {"digest": descriptor["digest"], "mediaType": descriptor["mediaType"],
                           "size": descriptor["size"], "labels": {**old.get("labels", {}), **labels}}
        _save(store)
    return list(entries)


def _layout_entries(path: str) -> dict:
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
    return {m["annotations"][NAME_KEY]: m for m in index["manifests"]}


# --- the airgap images directory --------------------------------------------------------------
def _archives() -> dict:
    if not IMAGES_DIR.is_dir():
        return {}
    return {p: p.stat() for p in sorted(IMAGES_DIR.iterdir())
            if p.is_file() and p.name.endswith(SUPPORTED)}


def _preload(path) -> None:
    started = time.monotonic()
    log(f"Importing images from {path}")
    try:
        names = import_archive(path, PINNED)
    except (OSError, KeyError, ValueError, tarfile.TarError) as err:
        log(f"Error encountered while importing {path}: {err}", "error")
        return
    for name in names:
        log(f"Imported {name}")
    log(f"Imported images from {path} in {time.monotonic() - started:.3f}s")


def _unpin_own_images() -> None:
    with _lock:
        store = load()
        for image in store.values():
            if image["labels"].get("io.cattle.k3s.pinned") == "pinned":
                for key in PINNED:
                    image["labels"].pop(key, None)
        _save(store)


def start() -> None:
    """Import the images directory now (pinned), then watch it in a thread."""
    _unpin_own_images()
    seen = _archives()
    for path in seen:
        _preload(path)
    threading.Thread(target=_watch, args=(seen,), daemon=True).start()


def _watch(seen: dict) -> None:
    while True:
        time.sleep(1.0)
        for path, stat in _archives().items():
            last = seen.get(path)
            seen[path] = stat
            if last is None or (stat.st_size != last.st_size and stat.st_mtime > last.st_mtime):
                time.sleep(WATCH_DELAY)
                _preload(path)
                seen[path] = path.stat()


# --- ctr and crictl ---------------------------------------------------------------------------
def ctr(args: list[str]) -> int:
    """`ctr [-n|--namespace k8s.io] images|image|i import FILE | ls [-q] | label REF [k=v ...]`."""
    if args[:1] in (["-n"], ["--namespace"]) and len(args) > 1:
        namespace, args = args[1], args[2:]
    elif args[:1] and args[0].startswith(("-n=", "--namespace=")):
        namespace, args = args[0].split("=", 1)[1], args[1:]
    else:
        namespace = "default"
    if args[:1] not in (["images"], ["image"], ["i"]) or len(args) < 2:
        return _unsupported("ctr", args)
    verb, rest = args[1], args[2:]
    store = load() if namespace == "k8s.io" else {}   # the kit's images live in the CRI namespace k8s.io
    if verb == "import":
        files, bad = _import_args(rest)
        if bad:
            print(f"Incorrect Usage: flag provided but not defined: -{bad}", file=sys.stderr)
            return 1
        if len(files) == 1 and namespace == "k8s.io":
            return _ctr_import(files[0])
    if verb in ("ls", "list"):
        return _ctr_list(store, quiet="-q" in rest or "--quiet" in rest)
    if verb == "label" and rest:
        return _ctr_label(rest[0], rest[1:])
    for flag in rest:
        if flag.startswith("-"):
            print(f"Incorrect Usage: flag provided but not defined: -{flag.lstrip('-').split('=')[0]}",
                  file=sys.stderr)
            return 1
    return _unsupported("ctr", args)


IMPORT_BOOLS = {"digests", "skip-digest-for-named", "all-platforms", "no-unpack", "local", "compress-blobs",
                "discard-unpacked-layers"}
IMPORT_VALUES = {"base-name", "index-name", "platform", "snapshotter"}


def _import_args(args: list[str]) -> tuple[list[str], str | None]:
    """Files and the first flag `ctr images import` does not define (its flags: containerd
    cmd/ctr/commands/images/import.go; there is no label flag)."""
    files, i = [], 0
    while i < len(args):
        name = args[i].lstrip("-").split("=", 1)[0]
        if not args[i].startswith("-"):
            files.append(args[i])
        elif name in IMPORT_VALUES and "=" not in args[i]:
            i += 1
        elif name not in IMPORT_BOOLS | IMPORT_VALUES:
            return files, name
        i += 1
    return files, None


def _ctr_import(path: str) -> int:
    try:
        names = import_archive(path, {})
    except (OSError, KeyError, ValueError, tarfile.TarError) as err:
        print(f"ctr: failed to import {path}: {err}", file=sys.stderr)
        return 1
    store = load()
    for name in names:
        print(f"unpacking {name} ({store[name]['digest']})...done")
    return 0


def _ctr_list(store: dict, quiet: bool) -> int:
    if quiet:
        print("".join(f"{name}\n" for name in sorted(store)), end="")
        return 0
    print("REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS")
    for name, image in sorted(store.items()):
        labels = ",".join(f"{k}={v}" for k, v in sorted(image["labels"].items())) or "-"
        print(f"{name}\t{image['mediaType']}\t{image['digest']}\t{image['size']} B\tlinux\t{labels}")
    return 0


def _ctr_label(name: str, pairs: list[str]) -> int:
    with _lock:
        store = load()
        if name not in store:
            print(f"ctr: image \"{name}\": not found", file=sys.stderr)
            return 1
        for pair in pairs:
            key, _, value = pair.partition("=")
            if value:
                store[name]["labels"][key] = value
            else:
                store[name]["labels"].pop(key, None)
        _save(store)
    print(",".join(f"{k}={v}" for k, v in sorted(store[name]["labels"].items())))
    return 0


def crictl(args: list[str]) -> int:
    """`crictl images [-o json]` (also `crictl img`)."""
    if args[:1] not in (["images"], ["img"]):
        return _unsupported("crictl", args)
    store = load()
    if args[1:] in (["-o", "json"], ["--output", "json"], ["-o=json"], ["--output=json"]):
        images = [{"id": image["digest"], "repoTags": [name], "repoDigests": [], "size": str(image["size"]),
                   "pinned": image["labels"].get("io.cri-containerd.pinned") == "pinned"}
                  for name, image in sorted(store.items())]
        print(json.dumps({"images": images}, indent=2))
        return 0
    if args[1:]:
        return _unsupported("crictl", args)
    print("IMAGE\tTAG\tIMAGE ID\tSIZE")
    for name, image in sorted(store.items()):
        repo, _, tag = name.rpartition(":")
        print(f"{repo}\t{tag}\t{image['digest'].split(':')[-1][:13]}\t{image['size']}B")
    return 0


def _unsupported(program: str, args: list[str]) -> int:
    print(f"{program} (lab stand-in): not emulated: {' '.join(args)}", file=sys.stderr)
    return 1
