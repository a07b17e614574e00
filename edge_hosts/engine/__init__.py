"""Runs steps on a site's hosts: each host's context (session, facts, what changed), the fan-out with retries
on dropped links, stopping on Ctrl-C, results and the live progress view. Imports artifacts, facts, access,
inventory."""
