"""What a host and its cluster report, read and never changed: the probe of a host, the first server's
reading of nodes, tokens and MetalLB pools, and waits on readiness. Imports access, inventory, `common`."""
