"""The site inventory: its models, loading with every problem at once, the k3s config keys it may set, the
registry credential it names, site-wide advice, and the files rendered from it alone (config.yaml,
registries.yaml). Imports only `common`."""
