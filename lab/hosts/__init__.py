"""The simulated edge hosts themselves: one host's namespaces, private directories and sshd (host), the bridge, veth
links and network namespaces (network), process identity (procs), SSH key pairs (keys), and what can be done to a
running host behind the kit's back: another CPU (arch), a skewed clock (clock), br_netfilter not loaded (kernel), a
Raspberry Pi (raspberry_pi), a reboot, re-image or SELinux enforcing (hostops). Modules here import only each other,
the standard library and third-party packages; never lab.releases nor lab.lifecycle. They read lab/standins/ files by
path, never import them."""
