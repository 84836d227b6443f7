"""What every report of the package shares: the research-use notice (and the HTML report shell)."""

from __future__ import annotations

__all__ = ["RESEARCH_USE"]

#: The notice every output of the package carries, word for word.
RESEARCH_USE = "For research use only. Not for diagnostic use."
