"""Stoker's event contract: events per bounded context, the envelope, the codec and the store."""

from .envelope import NEW, Aggregate, Envelope, Metadata, Position, Recorded
from .errors import ConcurrencyError

__all__ = ["NEW", "Aggregate", "ConcurrencyError", "Envelope", "Metadata", "Position", "Recorded"]
