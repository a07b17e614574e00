"""One environment's stack settings: the typed settings models (`settings`), their cross-field rules
(`settings_rules`), the Azure names derived for a stack and Azure's naming rules (`naming`), and reading and
validating Pulumi.yaml / Pulumi.<env>.yaml (`stack_config`). Plain Python, no Pulumi resources: it may import
`common`, `agents` (the agents' settings, lock and placement) and `infra.devops.settings` (the devops model it
nests), never `components`, `access`, `lifecycle`, `offline` or the program; everything above imports it."""
