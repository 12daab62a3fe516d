"""Names the vizdebug TensorBoard plugin shares with the writer and the frontend."""

from __future__ import annotations

from vizdebug.runs.codec import PLUGIN_NAME

__all__ = ["DERIVED_STATS", "PLUGIN_NAME", "STATS", "STAT_COLUMNS"]

#: Statistics the heatmap and the module panel offer, computed from the packed columns.
STAT_COLUMNS: dict[str, str] = {
    "l2": "L2 norm",
    "mean": "mean",
    "std": "standard deviation",
    "min": "minimum",
    "max": "maximum",
    "absmax": "largest magnitude",
    "zero_fraction": "zero fraction",
    "nan": "NaN count",
    "posinf": "+Inf count",
    "neginf": "-Inf count",
    "nonfinite": "NaN and Inf count",
    "numel": "elements",
}

#: Statistics that combine two roles: ``update_ratio`` is ``|update| / |weight|`` per name.
DERIVED_STATS: dict[str, str] = {"update_ratio": "update ratio |update| / |weight|"}

#: Every statistic a route accepts.
STATS: dict[str, str] = {**STAT_COLUMNS, **DERIVED_STATS}
