"""Pulumi runs this file: `pulumi up --stack <env>` from the repository root."""
from infra.program import main

main()
