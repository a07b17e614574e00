"""Fleet delivery by pull: per-site desired state rendered, released as Flux OCI artifacts, promoted in waves."""
