"""What a search spent: tokens of every expansion (pruned ones too), tokens scored, calls, time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class SearchCost:
    generated_tokens: int = 0
    """Tokens of every generated step, kept or pruned."""
    expansions: int = 0
    """Steps generated (one per continuation)."""
    requests: int = 0
    """Step requests sent (one per live branch per round; a request asks for n continuations)."""
    prompt_tokens: int = 0
    """Prompt tokens of every step request (the problem plus the branch so far): what an HTTP API
    bills; vLLM's prefix cache computes only the part it has not seen."""
    scored_tokens: int = 0
    """Tokens the step scorer read."""
    rounds: int = 0
    """Rounds (one batched generator call and one scorer call each)."""
    seconds: float = 0.0
    """This problem's share of the wall time of the rounds it was in (a round's time split by tokens
    generated), so the problems' seconds add up to the run's."""

    def add(self, other: SearchCost) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 4)}
