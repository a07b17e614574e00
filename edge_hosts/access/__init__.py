"""How the kit reaches a site and what it keeps here to do so: SSH sessions (paramiko, redaction, uploads),
verified host keys, whether ssh would take the login keys, the site's lock (here and on its first server), the
site's tokens and the kubeconfig file. Imports inventory and `common`."""
