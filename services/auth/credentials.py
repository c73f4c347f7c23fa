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

__all__ = ["ends_credentials"]


def ends_credentials(
    user: User, *, enabled: bool | None = None, admin: bool | None = None, password: bool = False
) -> bool:
    """Whether this change to ``user`` ends its existing credentials: a new password,
    disabling an enabled account, or taking an admin's rights away (a session must not keep
    rights its account lost)."""
    return password or (enabled is False and user.enabled) or (admin is False and user.admin)
