"""An ephemeral stack's network: its own address block, peered with its base env's VNET.

The agent running `up` for an ephemeral stack is a build agent of the base env, inside the base env's VNET. A copy
of a private base keeps its private API server, in a new VNET; for that agent to reach it, the new VNET takes an
address block of the same size that overlaps neither the base nor (most likely) another ephemeral stack (Azure
peers only VNETs whose spaces do not overlap), keeps the base's subnet layout inside it, and is peered with the
base's VNET both ways (network.peerings). A copy of a public base keeps the base's network: its API server admits
the base's authorized IP ranges, as the base's own does.
"""
import copy
import hashlib
from ipaddress import IPv4Network
from typing import Any

from infra.stack.stack_config import Stack

POOL = IPv4Network("10.128.0.0/9")  # ephemeral blocks; the kit's env files use 10.10-10.40


def address_block(stack: str, base_space: IPv4Network) -> IPv4Network:
    """A block of the base's size in POOL, chosen by the stack's name, that does not overlap the base."""
    if base_space.prefixlen < POOL.prefixlen:
        raise ValueError(f"the base's address space {base_space} is larger than the ephemeral pool {POOL}")
    blocks = list(POOL.subnets(new_prefix=base_space.prefixlen))
    start = int(hashlib.sha256(stack.encode()).hexdigest(), 16) % len(blocks)
    return next(b for b in blocks[start:] + blocks[:start] if not b.overlaps(base_space))


def moved(cidr: str, old_space: IPv4Network, new_space: IPv4Network) -> str:
    """`cidr` at the same offset inside `new_space` as it had inside `old_space`."""
    network = IPv4Network(cidr)
    offset = int(network.network_address) - int(old_space.network_address)
    return str(IPv4Network((int(new_space.network_address) + offset, network.prefixlen)))


def ephemeral_network(base: Stack, raw_network: dict[str, Any], stack: str) -> dict[str, Any]:
    """The network settings (as written in the stack file) of an ephemeral copy of `base` named `stack`."""
    network = copy.deepcopy(raw_network)
    if not base.settings.network.private_networking:
        return network
    old = base.settings.network.address_space
    new = address_block(stack, old)
    network["addressSpace"] = str(new)
    network["subnets"] = {key: moved(str(cidr), old, new) for key, cidr in network["subnets"].items()}
    network["peerings"] = [{"resourceGroup": base.names.resource_group, "vnet": base.names.vnet,
                            "addressSpace": str(old)}]
    return network
