"""k3s join tokens (k3s docs/cli/token.md): secure `K10<sha256 of the cluster CA PEM>::<user>:<password>` or short
`<password>`. The server token (user "server") joins servers and agents; the agent token (user "node") only agents."""


def parse(token: str) -> tuple[str | None, str]:
    """(CA hash or None for a short token, password)."""
    token = (token or "").strip()
    if token.startswith("K10") and "::" in token:
        ca_hash, credentials = token[3:].split("::", 1)
        return ca_hash, credentials.split(":", 1)[1] if ":" in credentials else credentials
    return None, token


def password(token: str) -> str:
    return parse(token)[1]


def secure(ca_hash: str, user: str, secret: str) -> str:
    return f"K10{ca_hash}::{user}:{secret}"


def accepts(server_token: str, agent_token: str | None, offered: str | None, role: str) -> bool:
    """Does the cluster accept `offered` from a node of `role`? (The node checks the CA hash itself.)"""
    if not offered:
        return False
    given = password(offered)
    if given == password(server_token):
        return True
    return role == "agent" and agent_token is not None and given == password(agent_token)
