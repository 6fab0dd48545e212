"""What a compute collector reports about itself: running or not, its last sample, its last error."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CollectorStatus:
    name: str
    running: bool = False
    last_sample_at: float | None = None
    samples: int = 0
    last_error: str | None = None

    def to_json_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "running": self.running,
            "last_sample_at": self.last_sample_at,
            "samples": self.samples,
            "last_error": self.last_error,
        }
