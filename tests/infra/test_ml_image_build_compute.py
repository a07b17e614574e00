"""Issue 8.6: a private workspace builds its images on an AzureML compute cluster in the VNET, idle at zero."""
import pytest

COMPUTE = "azure-native:machinelearningservices:Compute"
WORKSPACE = "azure-native:machinelearningservices:Workspace"


@pytest.mark.parametrize("env", ["qa", "uat", "prod"])
def test_private_workspaces_build_images_on_a_vnet_compute_cluster(recordings, env):
    rec = recordings[env]
    workspace = rec.one(WORKSPACE)
    (builder,) = [c for c in rec.of_type(COMPUTE) if c.inputs["properties"]["computeType"] == "AmlCompute"]
    assert workspace.inputs["imageBuildCompute"] == builder.inputs["computeName"]
    assert builder.inputs["workspaceName"] == workspace.inputs["workspaceName"]
    props = builder.inputs["properties"]["properties"]
    assert props["scaleSettings"]["minNodeCount"] == 0 and props["scaleSettings"]["maxNodeCount"] >= 1
    assert props["subnet"]["id"].endswith("/subnets/snet-aks-nodes")
    assert props["enableNodePublicIp"] is False and props["remoteLoginPortPublicAccess"] == "Disabled"
    assert builder.inputs["properties"]["disableLocalAuth"] is True
    assert workspace.urn in builder.dependencies
    (push,) = [a for a in rec.of_type("azure-native:authorization:RoleAssignment") if a.name == "access-image-build-acrpush"]
    assert push.inputs["roleDefinitionId"].endswith("/8311e382-0749-4cb8-b61a-304f252e45ec")  # AcrPush
    assert push.inputs["scope"].endswith("/registries/" + rec.one("azure-native:containerregistry:Registry").inputs["registryName"])
    assert builder.urn in push.dependencies  # the builder's own identity
    assert any("image-build compute cluster has no public IPs" in note and "NAT gateway" in note for note in rec.notes)


def test_a_public_workspace_needs_no_builder(recordings):
    rec = recordings["dev"]
    assert "imageBuildCompute" not in rec.one(WORKSPACE).inputs
    assert all(c.inputs["properties"]["computeType"] != "AmlCompute" for c in rec.of_type(COMPUTE))
