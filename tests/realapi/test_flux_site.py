"""lab/programs/flux_site.py: the real Flux Operator, Flux controllers and kube-controller-manager run out of
cluster against the real API server, with the CRDs of the pinned module versions installed, and stop cleanly."""
from lab.programs.flux_site import CONTROLLERS, FluxSite, crd_files

KINDS = {"ocirepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io",
         "alerts.notification.toolkit.fluxcd.io", "providers.notification.toolkit.fluxcd.io",
         "resourcesets.fluxcd.controlplane.io", "resourcesetinputproviders.fluxcd.controlplane.io"}


def test_crds_come_from_the_pinned_modules_of_each_program():
    paths = [str(p) for p in crd_files()]
    for marker in ("source-controller@v1.9.1", "kustomize-controller@v1.9.4", "notification-controller@v1.9.3",
                   "flux-operator-v0.58.1/module/src"):
        assert any(marker in p for p in paths), marker


def test_the_programs_start_healthy_reconcile_and_stop(real_api, kubectl, tmp_path):
    with FluxSite.start(real_api, tmp_path / "flux", kubectl=kubectl.binary) as site:
        assert set(site.procs) == {*CONTROLLERS, "flux-operator", "kube-controller-manager"}
        assert all(proc.poll() is None for proc in site.procs.values())
        names = {c["metadata"]["name"] for c in kubectl.json("get", "crd")["items"]}
        assert KINDS <= names
        # kube-controller-manager runs: the namespace the site made gets its default ServiceAccount
        kubectl.run("wait", "--for=create", "serviceaccount/default", "-n", "flux-system", "--timeout=60s")
        procs = list(site.procs.values())
    assert all(proc.poll() is not None for proc in procs) and not site.procs
