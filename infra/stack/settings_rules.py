"""Cross-field rules on validated stack settings: CIDR layout, exposure and Azure names."""
import re
from datetime import date
from ipaddress import IPv4Address, IPv4Network
from typing import Iterator

from common import pins
from agents.build import read_lock
from agents.edge_placement import unschedulable_pools
from agents.settings import keda_untested
from infra.devops.settings import agents_disagreements
from infra.stack.naming import NODE_POOL_RULE, StackNames
from infra.stack.settings import StackSettings

Violation = tuple[str, str]  # (key path, problem)

NAME_KEYS = {"storage_account": "storageAccount", "registry": "registry", "key_vault": "keyVault",
             "cluster": "cluster", "dns_prefix": "dnsPrefix"}
# AKS fails a node upgrade whose drain (eviction honouring PodDisruptionBudgets) outlasts drainTimeoutInMinutes
# (1-1440, default 30: AgentPoolUpgradeSettings in the ContainerService API, Azure/bicep-types-az). The agents'
# PDB (maxUnavailable: 0) holds a node until its job pods end: within the job timeout plus their 120 s grace.
DRAIN_MARGIN_MINUTES = 5
# A public IP's DNS label (the Network API's CheckDnsNameAvailability, Azure/azure-rest-api-specs
# specification/network/.../stable/2024-05-01/checkDnsAvailability.json: domainNameLabel)
DNS_LABEL = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
MAX_DRAIN_MINUTES = 1440


def violations(settings: StackSettings, names: StackNames) -> list[Violation]:
    """Every rule the settings break, each with the key path it concerns."""
    return [*_subnet_layout(settings), *_exposure(settings),
            *_node_pools(settings), *_names(settings, names), *_ml_attachment(settings), *_node_drain(settings),
            *_edge_registry(settings), *_fleet_receiver(settings),
            *agents_disagreements(settings.devops, settings.agents), *unschedulable_pools(settings.agents)]


def pins_in_use(settings: StackSettings) -> dict[str, str]:
    """The versions this stack pins (component -> version), each checked against common/pins.yaml."""
    return {"aks-kubernetes": settings.cluster.kubernetes_version, "kubectl": read_lock()["KUBECTL_VERSION"]}


def warnings(settings: StackSettings, today: date | None = None) -> list[str]:
    """Valid but risky combinations, and pins past their end of support, shown with the plan."""
    notes = pins.warnings(pins_in_use(settings), today or date.today()) + keda_notes(settings)
    if settings.ml.attach_aks:
        notes.append("AKS keeps local accounts on because ml.attachAks is on: Microsoft documents that the AzureML "
                     "extension does not support AKS with local accounts disabled "
                     "(learn.microsoft.com/azure/machine-learning/how-to-deploy-kubernetes-extension#limitations); "
                     "set ml.attachAks: false to turn them off")
    if settings.agents.enabled and settings.agents.pools and not settings.devops.enabled:
        notes.append("the AKS agents get no registry push credential from this stack (devops is off): pipelines that "
                     "push from them need a registry service connection of their own")
    if settings.network.private_networking:
        notes.append("the image-build compute cluster has no public IPs and the subnets no default outbound access: "
                     "its subnet (network.subnets.aksNodes) goes out through the stack's NAT gateway, and so does "
                     "the AKS nodes' outbound traffic (a subnet's NAT gateway takes precedence over the load "
                     "balancer's outbound rules, learn.microsoft.com/azure/nat-gateway/nat-overview); allow its "
                     "public IP where those destinations filter by address")
    receiver = settings.fleet_receiver
    if receiver:
        notes.append(receiver_exposure(settings))
    if receiver and set(receiver.image.digest.removeprefix("sha256:")) == {"0"}:
        notes.append("fleetReceiver.image.digest is the example's zeros: build and push the kit's image "
                     "(fleet/image/Dockerfile, docs/fleet.md \"The receiver on AKS\") and pin its digest before "
                     "pulumi up")
    if settings.ml.attach_aks and settings.cluster.authorized_ip_ranges:
        notes.append("the AzureML control plane must reach the API server: add its IP ranges (both paired regions) "
                     "to cluster.authorizedIpRanges")
    return notes


def keda_notes(settings: StackSettings) -> list[str]:
    """KEDA on a cluster outside its tested Kubernetes range: AKS, and edge sites at the kit's k3s pin."""
    agents = settings.agents
    if not agents.enabled:
        return []
    clusters = {"AKS": settings.cluster.kubernetes_version} if agents.pools and agents.install_keda else {}
    edge = pins.newest("k3s")
    clusters |= {f"edge site {site.name}": edge for site in agents.edge_sites if site.install_keda and edge}
    return keda_untested(agents.keda_version, clusters)


def _ml_attachment(settings: StackSettings) -> Iterator[Violation]:
    if settings.ml.attach_aks and settings.cluster.disable_local_accounts:
        yield "cluster.disableLocalAccounts", ("Microsoft documents that the AzureML extension does not support AKS "
                                               "with local accounts disabled, and ml.attachAks is on: remove "
                                               "disableLocalAccounts (or set ml.attachAks: false)")


def _edge_registry(settings: StackSettings) -> Iterator[Violation]:
    """Every edge site the stack deploys to pulls from the registry, and one with agents pushes what it builds."""
    access = {site.name: (i, site) for i, site in enumerate(settings.registry.edge_sites)}
    agent_sites = [site.name for site in settings.agents.edge_sites] if settings.agents.enabled else []
    devops_sites = [site.name for site in settings.devops.edge_sites] if settings.devops.enabled else []
    for name in dict.fromkeys([*agent_sites, *devops_sites]):
        if name not in access:
            yield "registry.edgeSites", (f"edge site {name!r} has no way to the registry: add it with egressIps "
                                         "(its public egress addresses) and pull (the repositories it runs)")
        elif name in agent_sites and not access[name][1].push:
            yield f"registry.edgeSites[{access[name][0]}].push", (
                f"edge site {name!r} runs agent pools (agents.edgeSites), which push the images they build: list "
                "those repositories")
    for i, site in access.values():
        for j, ip in enumerate(site.egress_ips):
            if ip.prefixlen < 8:
                yield f"registry.edgeSites[{i}].egressIps[{j}]", f"{ip} opens the registry to far more than a site"


def receiver_sources(settings: StackSettings) -> list[IPv4Network]:
    """Where the sites' reports may come from: fleetReceiver.allowFrom, else every edge site's egress addresses."""
    receiver = settings.fleet_receiver
    if receiver and receiver.allow_from:
        return list(receiver.allow_from)
    return list(dict.fromkeys(ip for site in settings.registry.edge_sites for ip in site.egress_ips))


def receiver_exposure(settings: StackSettings) -> str:
    """The plan's line on how the sites reach the receiver."""
    receiver = settings.fleet_receiver
    address = receiver.address(settings.location, settings.name_prefix)
    sources = ", ".join(str(cidr) for cidr in receiver_sources(settings))
    if receiver.exposure == "public":
        return (f"fleetReceiver ({receiver.environment}) exposure public: a public Azure load balancer at {address}, "
                f"open only to {sources} (loadBalancerSourceRanges, enforced in the cluster's network security group, "
                "and the NetworkPolicy); its DNS label must be free in the location and its certificate name the host")
    return (f"fleetReceiver ({receiver.environment}) exposure internal: an internal Azure load balancer at {address}, "
            f"reachable only over a VPN or ExpressRoute into the VNET (this stack provisions neither); the "
            f"NetworkPolicy admits {sources}")


def _fleet_receiver(settings: StackSettings) -> Iterator[Violation]:
    """The receiver's endpoint fits its exposure, and some site, and no more than the sites, may reach it."""
    receiver = settings.fleet_receiver
    if receiver is None:
        return
    yield from (_public_endpoint(settings) if receiver.exposure == "public" else _internal_endpoint(settings))
    if not receiver_sources(settings):
        yield "fleetReceiver.allowFrom", ("no site could report: give the addresses the sites' reports come from "
                                          "(or list the sites with their egressIps in registry.edgeSites)")
    for i, cidr in enumerate(receiver.allow_from):
        if cidr.prefixlen < 8:
            yield f"fleetReceiver.allowFrom[{i}]", f"{cidr} opens the receiver to far more than the sites"


def _internal_endpoint(settings: StackSettings) -> Iterator[Violation]:
    """A fixed IP AKS can give its internal load balancer; no DNS label (Azure names only public IPs)."""
    receiver, subnet = settings.fleet_receiver, settings.network.subnets.aks_nodes
    if receiver.dns_label is not None:
        yield "fleetReceiver.dnsLabel", "only for exposure: public (an internal load balancer gets no Azure DNS name)"
    ip = receiver.load_balancer_ip
    # AKS takes an internal load balancer's IP from the cluster's subnet (learn.microsoft.com/azure/aks/internal-lb,
    # "Specify an IP address"); Azure reserves each subnet's first four addresses and its last
    # (learn.microsoft.com/azure/virtual-network/virtual-networks-faq, "restrictions on using IP addresses").
    if ip is None:
        yield "fleetReceiver.loadBalancerIp", (f"exposure internal needs the fixed private IP of its load balancer, "
                                               f"a host of network.subnets.aksNodes ({subnet})")
    elif ip not in subnet:
        yield "fleetReceiver.loadBalancerIp", f"{ip} is outside network.subnets.aksNodes ({subnet})"
    elif int(ip) - int(subnet.network_address) < 4 or ip == subnet.broadcast_address:
        yield "fleetReceiver.loadBalancerIp", f"{ip} is one of the addresses Azure reserves in {subnet}"


def _public_endpoint(settings: StackSettings) -> Iterator[Violation]:
    """No fixed IP (Azure gives the public load balancer its address); a DNS label Azure accepts."""
    receiver = settings.fleet_receiver
    if receiver.load_balancer_ip is not None:
        yield "fleetReceiver.loadBalancerIp", ("exposure public takes no loadBalancerIp: Azure gives the public load "
                                               "balancer its address and the sites use its DNS name; remove it")
    label = receiver.label(settings.name_prefix)
    if not DNS_LABEL.match(label):
        derived = "" if receiver.dns_label is not None else " (derived from namePrefix and environment: set one)"
        yield "fleetReceiver.dnsLabel", (f"{label!r} is not an Azure DNS label{derived}: 3-63 lowercase letters, "
                                         "digits and '-', starting with a letter and ending with a letter or digit")


def drain_timeout_minutes(job_timeout_minutes: int | None) -> int | None:
    """Long enough for a running agent job to finish (None: no agents on the pool, AKS's default applies)."""
    return None if job_timeout_minutes is None else job_timeout_minutes + DRAIN_MARGIN_MINUTES


def _node_drain(settings: StackSettings) -> Iterator[Violation]:
    agents = settings.agents
    drain = drain_timeout_minutes(agents.job_timeout_minutes) if agents.enabled and agents.pools else None
    if drain and drain > MAX_DRAIN_MINUTES:
        yield "agents.jobTimeoutMinutes", (f"{agents.job_timeout_minutes} minutes is longer than AKS can wait to drain "
                                           f"a node during upgrades ({MAX_DRAIN_MINUTES} minutes, less "
                                           f"{drain - agents.job_timeout_minutes} for the pod's shutdown)")


def _subnet_layout(settings: StackSettings) -> Iterator[Violation]:
    net = settings.network
    yield from network_layout({"addressSpace": net.address_space, "serviceCidr": net.service_cidr,
                               "podCidr": net.pod_cidr, "dnsServiceIp": net.dns_service_ip,
                               **{f"subnets.{k}": v for k, v in net.subnets.model_dump(by_alias=True).items()}})


def decidable_network_rules(values: dict) -> list[Violation]:
    """The CIDR rules that can still be decided from raw settings whose other fields are invalid (an invalid subnet
    must not hide the serviceCidr overlap): each rule runs when the fields it reads parse."""
    raw = values.get("network") if isinstance(values.get("network"), dict) else {}
    subnets = raw.get("subnets") if isinstance(raw.get("subnets"), dict) else {}
    fields = {key: raw.get(key) for key in ("addressSpace", "serviceCidr", "podCidr", "dnsServiceIp")}
    fields |= {f"subnets.{key}": value for key, value in subnets.items()}
    parsed = {}
    for key, value in fields.items():
        try:
            parsed[key] = (IPv4Address if key == "dnsServiceIp" else IPv4Network)(str(value))
        except ValueError:
            continue  # reported by the field's own validation
    return list(network_layout(parsed))


def network_layout(net: dict) -> Iterator[Violation]:
    """Subnets inside the VNET and apart, service and pod CIDRs clear of it and of each other, the DNS service IP a
    host of the service CIDR; `net` holds the parsed fields by key path (a missing one skips its rules)."""
    space = net.get("addressSpace")
    subnets = [(key, cidr) for key, cidr in net.items() if key.startswith("subnets.")]
    for key, cidr in subnets:
        if space is not None and not cidr.subnet_of(space):
            yield f"network.{key}", f"{cidr} is outside the VNET address space {space}"
    for i, (key, cidr) in enumerate(subnets):
        for other_key, other in subnets[i + 1:]:
            if cidr.overlaps(other):
                yield f"network.{key}", f"{cidr} overlaps network.{other_key} ({other})"
    for key, other_key in (("serviceCidr", "addressSpace"), ("podCidr", "addressSpace"), ("podCidr", "serviceCidr")):
        if key in net and other_key in net and net[key].overlaps(net[other_key]):
            yield f"network.{key}", f"{net[key]} overlaps network.{other_key} ({net[other_key]})"
    dns, service = net.get("dnsServiceIp"), net.get("serviceCidr")
    if dns is not None and service is not None and (dns not in service or dns == service.network_address):
        yield "network.dnsServiceIp", f"{dns} must be a host address inside serviceCidr {service}"


def _exposure(settings: StackSettings) -> Iterator[Violation]:
    ranges = settings.cluster.authorized_ip_ranges
    if settings.network.private_networking and ranges:
        yield "cluster.authorizedIpRanges", "has no effect with privateNetworking: true; remove it"
    if not settings.network.private_networking and not ranges:
        yield "cluster.authorizedIpRanges", ("a public API server needs authorized IP ranges "
                                             "(or set network.privateNetworking: true)")
    for i, cidr in enumerate(ranges):
        if cidr.prefixlen == 0:
            yield f"cluster.authorizedIpRanges[{i}]", f"{cidr} opens the API server to the whole internet"


def _node_pools(settings: StackSettings) -> Iterator[Violation]:
    pattern, rule = NODE_POOL_RULE
    pools = {"x86Pool": settings.cluster.x86_pool.name, "arm64Pool": settings.cluster.arm64_pool.name}
    for key, name in pools.items():
        if not re.match(pattern, name):
            yield f"cluster.{key}.name", f"{name!r} is invalid: {rule}"
        elif name == "system":
            yield f"cluster.{key}.name", "'system' is the system pool's name"
    if pools["x86Pool"] == pools["arm64Pool"]:
        yield "cluster.arm64Pool.name", f"{pools['arm64Pool']!r} is also the x86 pool's name"


def _names(settings: StackSettings, names: StackNames) -> Iterator[Violation]:
    overridden = settings.names.model_dump(exclude_none=True)
    for field, problem in names.violations():
        key = f"names.{NAME_KEYS[field]}" if field in overridden else "namePrefix"
        yield key, f"{field.replace('_', ' ')} {problem}"
