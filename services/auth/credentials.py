"""When an account's existing credentials stop counting: the credential epoch's rules.

Every account has a ``credential_epoch`` (services/auth/models.py). Portal sessions, refresh
tokens and the verified-password cache remember the epoch they were made in and count only
while it is still the account's: incrementing it ends them all at once, in every process,
without finding and deleting each one. Application tokens are not bound to it: they are
credentials of their own, listed and revoked one by one (and refused while the account is
disabled).
"""

from __future__ import annotations

from services.auth.models import User
from services.auth.policy import Principal
from services.core.errors import Forbidden

__all__ = ["ends_credentials", "require_credential_manager"]


def ends_credentials(
    user: User, *, enabled: bool | None = None, admin: bool | None = None, password: bool = False
) -> bool:
    """Whether this change to ``user`` ends its existing credentials: a new password,
    disabling an enabled account, or taking an admin's rights away (a session must not keep
    rights its account lost)."""
    return password or (enabled is False and user.enabled) or (admin is False and user.admin)


def require_credential_manager(actor: Principal, *, reauthenticated: bool = False) -> None:
    """Refuse a change of credentials (a password, creating or revoking an application
    token) made with a credential that does not prove the person: an application (or refresh)
    token is a key handed to a machine, and must not mint more keys, end the others or lock
    its owner out; a portal session proves the person only shortly after sign-in, or with the
    current password typed again (``reauthenticated``). A password given with the request
    itself (HTTP Basic) proves it."""
    if actor.credential in {"app_token", "refresh_token"}:
        raise Forbidden("app_token_not_allowed", "application tokens cannot change passwords"
                        " or create or revoke tokens; sign in with your password for that")
    if actor.credential == "session" and not reauthenticated:
        raise Forbidden("reauthentication_required",
                        "type your current password to confirm it is you")
