#!/usr/bin/env python3
"""Stand-in kubectl for the pipeline scripts: logs each call, keeps applied files, answers from FAKE_KUBECTL_*."""
import json
import os
import shutil
import sys
from pathlib import Path

state = Path(os.environ["FAKE_KUBECTL_DIR"])
args = sys.argv[1:]
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps(args) + "\n")
if args[0] == "apply":
    source = Path(args[args.index("-f") + 1])
    for manifest in source.iterdir():
        shutil.copy(manifest, state / f"applied-{manifest.name}")
elif args[0] == "rollout":
    sys.exit(int(os.environ.get("FAKE_KUBECTL_ROLLOUT_EXIT", "0")))
elif args[:2] == ["get", "--raw"]:
    print(os.environ["FAKE_KUBECTL_HEALTHZ"])
elif args[:2] == ["get", "service"]:
    print(os.environ.get("FAKE_KUBECTL_ADDRESS", ""), end="")
else:
    sys.exit(f"fake kubectl: unexpected {args}")
