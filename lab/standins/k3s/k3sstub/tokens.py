"""Cluster join token: K10<ca sha256>::server:<password>, or just the password."""


def password(token: str) -> str:
    token = token.strip()
    if token.startswith("K10") and "::" in token:
        return token.split("::", 1)[1].split(":", 1)[1]
    return token


def accepts(stored: str, offered: str | None, ca_hash: str) -> bool:
    """Does the cluster token `stored` accept the token a node offers?"""
    if not offered:
        return False
    offered = offered.strip()
    if offered.startswith("K10") and "::" in offered and offered[3:].split("::")[0] != ca_hash:
        return False
    return password(offered) == password(stored)
