#!/bin/bash
# Stand-in for env.sh: writes .env and .path next to itself, as the real one does.
touch .env || exit 1
echo "$PATH" > .path
