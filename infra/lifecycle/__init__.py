"""Stack lifecycle through the Pulumi Automation API: preview/up/refresh/destroy, ephemeral stacks, the reaper."""
