"""The status receiver's parts: per-site report keys, request authentication, the durable status store."""
