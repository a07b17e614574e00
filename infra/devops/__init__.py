"""Azure DevOps as code: pools, service connections, variable group and environments of one platform env."""
