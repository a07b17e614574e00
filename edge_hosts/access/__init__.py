"""How the kit reaches a site and what it keeps here to do so: SSH sessions (paramiko, redaction, uploads),
verified host keys, the site's tokens and the kubeconfig file. Imports inventory and `common`."""
