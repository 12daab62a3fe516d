"""The TUI's widgets, one a module; each takes plain data so any source can feed it."""

from __future__ import annotations

from .anomaly_table import AnomalyTable
from .filter_bar import FilterBar
from .health_table import HealthTable
from .histogram_view import HistogramView
from .line_chart import LineChart
from .message_bar import MessageBar
from .module_tree import ModuleTree
from .runs_list import RunsList
from .scalar_view import ScalarView
from .series_view import SeriesView
from .step_bar import StepBar
from .tensor_inspector import TensorInspector
from .value_grid import ValueGrid

__all__ = [
    "AnomalyTable",
    "FilterBar",
    "HealthTable",
    "HistogramView",
    "LineChart",
    "MessageBar",
    "ModuleTree",
    "RunsList",
    "ScalarView",
    "SeriesView",
    "StepBar",
    "TensorInspector",
    "ValueGrid",
]
