"""MetalLB address ranges, as an edge inventory and a fleet site give a pool's addresses ('a-b' or a CIDR), checked
as MetalLB v0.16.1 checks a pool (internal/config/config.go): a CIDR or a range, never a bare address, no range that
ends before it starts, and no two entries of one pool overlapping ("overlaps with already defined CIDR")."""
from __future__ import annotations

import ipaddress

Range = tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]


def address_range(text: str) -> Range:
    """First and last address of a MetalLB range 'a-b' or CIDR 'a/n'; ValueError saying what is wrong."""
    try:
        if "-" in text:
            first, last = (ipaddress.IPv4Address(part.strip()) for part in text.split("-", 1))
        else:
            net = ipaddress.IPv4Network(text, strict=True)
            first, last = net[0], net[-1]
    except ValueError as err:
        raise ValueError(f"'{text}' is not an address range 'a-b' or a CIDR: {err}") from None
    if "-" not in text and "/" not in text:  # MetalLB v0.16.1 refuses a bare address (config.go ParseCIDR)
        raise ValueError(f"'{text}' is not an address range 'a-b' or a CIDR: a single address is '{text}/32'")
    if first > last:
        raise ValueError(f"range '{text}' ends before it starts")
    return first, last


def overlapping(ranges: list[Range]) -> list[tuple[int, int]]:
    """(index, earlier index) of every entry that overlaps an earlier one of the same pool."""
    return [(index, before) for index, (first, last) in enumerate(ranges)
            for before, (low, high) in enumerate(ranges[:index]) if first <= high and low <= last]


def contains(ranges: list[Range], address: str) -> bool:
    """Whether `address` lies in one of `ranges`."""
    return any(first <= ipaddress.IPv4Address(address) <= last for first, last in ranges)
