"""The destroy guard: only ephemeral stacks go without --force and the env name typed back."""
from collections.abc import Callable

from infra.stack.settings import Lifecycle

Ask = Callable[[str], str]


class DestroyRefused(Exception):
    """destroy was refused; nothing has run."""


def check_destroy(env: str, lifecycle: Lifecycle | None, *, force: bool, confirm: str, ask: Ask | None) -> None:
    """Return when `env` may be destroyed; raise DestroyRefused otherwise.

    An ephemeral stack may always go. Anything else (protected, or not ephemeral, or without a stack file here)
    needs --force and the env name typed back: at the prompt `ask` (interactive) or as --confirm NAME.
    """
    if lifecycle is not None and lifecycle.ephemeral:
        return
    reason = _why_guarded(env, lifecycle)
    if not force:
        raise DestroyRefused(f"destroy refused: {env} {reason}; to destroy it anyway pass --force and type the "
                             f"env name back when asked (or --confirm {env} when not interactive)")
    typed = confirm or (ask(f"{env} {reason}. Type the env name to destroy it") if ask else "")
    if not typed:
        raise DestroyRefused(f"destroy refused: {env} {reason}; --force needs the env name typed back at the prompt "
                             f"or --confirm {env} when not interactive")
    if typed.strip() != env:
        raise DestroyRefused(f"destroy refused: the name typed back ({typed.strip()!r}) is not {env!r}")


def _why_guarded(env: str, lifecycle: Lifecycle | None) -> str:
    if lifecycle is None:
        return f"has no Pulumi.{env}.yaml here, so it cannot be shown to be ephemeral"
    if lifecycle.protected:
        return "is a protected environment (lifecycle.protected)"
    return "is not an ephemeral stack (lifecycle.ephemeral is false)"
