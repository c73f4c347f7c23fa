"""What the scanner needs from the parts that can be swapped."""

from __future__ import annotations

from typing import Protocol

from services.scanner.models import Finding, Inventory

__all__ = ["Matcher"]


class Matcher(Protocol):
    async def match(self, inventory: Inventory) -> list[Finding]:
        """Every known vulnerability affecting a package of the inventory."""
        ...
