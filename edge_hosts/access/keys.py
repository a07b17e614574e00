"""Whether ssh would use the site's login keys, checked before any host is contacted: each private key file is
there and readable, not open to group or others (OpenSSH ignores such a key), and loads without a passphrase
(the kit never asks for one); with ssh.useAgent, an ssh-agent is running here and holds a key."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import paramiko

from edge_hosts.inventory.model import Inventory

# the key types paramiko 5.1 tries for a key_filename, in its order (paramiko/client.py SSHClient._auth)
KEY_CLASSES = (paramiko.RSAKey, paramiko.ECDSAKey, paramiko.Ed25519Key)


def key_problems(inventory: Inventory) -> list[str]:
    """Every key ssh would refuse or that needs a passphrase, each with its key path; the agent when it is used."""
    if inventory.ssh.use_agent:
        problem = _agent_problem()
        return [f"{inventory.source}: ssh.useAgent: {problem}"] if problem else []
    files = [("ssh.keyFile", inventory.ssh.key_file)]
    files += [(f"hosts[{i}].ssh.keyFile", h.ssh.key_file) for i, h in enumerate(inventory.hosts)]
    return [f"{inventory.source}: {where}: {problem}" for where, path in files if path is not None
            for problem in [file_problem(path)] if problem]


def file_problem(path: Path) -> str | None:
    """Why ssh would not log in with this private key file (None when it would)."""
    if not path.is_file() or not os.access(path, os.R_OK):
        return f"{path} is not a readable private key file"
    st = path.stat()
    # OpenSSH's rule (authfile.c sshkey_perm_ok): a key file the user owns with any group or other permission bit is
    # "UNPROTECTED PRIVATE KEY FILE!" and ignored; a file owned by someone else is not checked
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        return (f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, open to group or others: ssh ignores such a key "
                f"(UNPROTECTED PRIVATE KEY FILE); chmod 600 {path}")
    return _load_problem(path)


def _load_problem(path: Path) -> str | None:
    """The file as paramiko would load it for a login: one of its key types, without a passphrase."""
    encrypted = False
    for key_class in KEY_CLASSES:
        try:
            key_class.from_private_key_file(str(path))
            return None
        except paramiko.PasswordRequiredException:
            encrypted = True
        except (paramiko.SSHException, ValueError, TypeError, UnicodeError):
            continue
    if encrypted:
        return (f"{path} is protected by a passphrase and the kit never asks for one: add it to an ssh-agent "
                f"(ssh-add {path}) and set ssh.useAgent: true")
    return f"{path} is not a private key ssh can use (RSA, ECDSA or Ed25519; not the .pub file)"


def _agent_problem() -> str | None:
    """Why an ssh-agent cannot sign the logins here (None when one runs and holds a key)."""
    socket = os.environ.get("SSH_AUTH_SOCK")
    if not socket:
        return "no ssh-agent runs here (SSH_AUTH_SOCK is not set): start one and add the site's key (ssh-add)"
    if not Path(socket).is_socket():  # paramiko's Agent would just hold no keys
        return f"SSH_AUTH_SOCK is {socket}, where no ssh-agent listens"
    try:
        agent = paramiko.Agent()
        keys = agent.get_keys()
        agent.close()
    except (paramiko.SSHException, OSError):
        return f"the ssh-agent at SSH_AUTH_SOCK ({socket}) does not answer"
    if not keys:
        return "the ssh-agent holds no key: add the site's key (ssh-add <key file>)"
    return None
