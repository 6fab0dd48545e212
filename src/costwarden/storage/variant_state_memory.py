"""The degrade state of `degrade` budgets in this process: one replica, nothing to share."""

from __future__ import annotations

from costwarden.domain.variant import DegradeState


class MemoryVariantState:
    """A VariantStateStore in a dict."""

    def __init__(self) -> None:
        self._states: dict[str, DegradeState] = {}

    async def load(self) -> dict[str, DegradeState]:
        return dict(self._states)

    async def save(self, budget_id: str, state: DegradeState) -> None:
        self._states[budget_id] = state

    async def close(self) -> None:
        return None
