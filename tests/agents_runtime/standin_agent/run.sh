#!/bin/bash
# Stand-in for run.sh: resolves its directory like the real one, runs the listener.
if [ "$(id -u)" -eq 0 ] && [ -z "$AGENT_ALLOW_RUNASROOT" ]; then
    echo "Must not run interactively with sudo"
    exit 1
fi
# the real script resolves symlinks the same way, in a longer loop
DIR="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
"$DIR"/bin/Agent.Listener run "$@"
exit $?
