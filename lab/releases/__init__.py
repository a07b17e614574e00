"""What the lab provides to the sites it simulates: the stand-in k3s/MetalLB/Flux release tree a mirror serves and the
air-gap bundle, with a server for them (artifacts), the stand-in container images they carry (images), and the shared
upstream copy the real manifests and k3s key lists are read from (upstream). Modules here import each other, fleet
(its pins), the standard library and third-party packages; never lab.hosts nor lab.lifecycle. They read
lab/standins/ files by path, never import them."""
