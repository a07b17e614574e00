#!/bin/bash
# Stand-in for the agent package's config.sh: same root resolution and root refusal as the
# real one, then hands over to bin/Agent.Listener (configure | remove).
if [ "$(id -u)" -eq 0 ] && [ -z "$AGENT_ALLOW_RUNASROOT" ]; then
    echo "Must not run with sudo"
    exit 1
fi
# the real script resolves symlinks the same way, in a longer loop
DIR="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
cd "$DIR" || exit 1
source ./env.sh
shopt -s nocasematch
if [[ "$1" == "remove" ]]; then
    ./bin/Agent.Listener "$@"
else
    ./bin/Agent.Listener configure "$@"
fi
