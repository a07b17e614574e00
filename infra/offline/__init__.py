"""The offline plan: run the real Pulumi program under Pulumi's mock runtime and record it."""
