"""The metrics dock: tabs for predictions, layers (FSS, CKA), relevance (RS), VAM and KDExplainer."""
from __future__ import annotations

from PySide6.QtWidgets import QDockWidget, QTabWidget, QWidget

from .attention_views import RoutingView, VamView
from .dataset_metrics_view import DatasetMetricsRunner, LayerMetricsView, RelevanceView
from .jobs import JobRunner
from .prediction_view import PredictionView
from .session import Session
from .settings import AppSettings


class MetricsDock(QDockWidget):
    def __init__(self, session: Session, jobs: JobRunner, settings: AppSettings, parent: QWidget | None = None):
        super().__init__("Metrics", parent)
        self.setObjectName("metrics_dock")
        self.tabs = QTabWidget()
        self.predictions = PredictionView(session)
        self.dataset_runner = DatasetMetricsRunner(session, jobs, settings)
        self.layers = LayerMetricsView(session, self.dataset_runner)
        self.relevance = RelevanceView(session)
        self.vam = VamView(session, settings)
        self.routing = RoutingView(session, settings)
        for widget, title in ((self.predictions, "Predictions"), (self.layers, "Layers"),
                              (self.relevance, "Relevance"), (self.vam, "VAM"), (self.routing, "KDExplainer")):
            self.tabs.addTab(widget, title)
        self.setWidget(self.tabs)
