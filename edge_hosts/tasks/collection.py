"""The invoke collection `edge`: every edge task, as ./kit lists them."""
from invoke import Collection

from edge_hosts.tasks import day2, site

edge = Collection("edge", site.plan, site.bootstrap, site.status, site.kubeconfig, day2.reset, site.bundle, site.trust,
                  day2.backup, day2.restore, day2.rotate_certs)
