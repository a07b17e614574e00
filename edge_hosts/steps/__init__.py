"""Bootstrap steps: each checks a host's state, then changes only what differs."""
