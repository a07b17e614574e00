"""What a site downloads or is given: k3s releases, MetalLB and Flux images (online, through the site's proxy,
or from a bundle made here), verified by sha256 or digest. Imports facts, access, inventory, `common`, `fleet`."""
