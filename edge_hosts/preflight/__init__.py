"""Checks before anything is installed: per host (arch, disk, clock, time sync, br_netfilter, SELinux) and
between hosts (the host firewall's nftables/iptables-nft rules evaluated per peer and port, reachability).
Imports engine and the packages below it."""
