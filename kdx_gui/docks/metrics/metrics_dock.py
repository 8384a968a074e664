"""The metrics dock: tabs for predictions, dark knowledge, embeddings, layers (FSS, CKA), relevance (RS),
VAM and KDExplainer.

Tabs other than Predictions are built when first shown (or first asked for): their plots cost a
noticeable part of the window's start-up.
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QDockWidget, QTabWidget, QVBoxLayout, QWidget

from kdx_gui.docks.metrics.concepts_view import ConceptsView
from kdx_gui.docks.metrics.dark_knowledge_view import DarkKnowledgeView
from kdx_gui.docks.metrics.dataset_metrics_view import DatasetMetricsRunner, LayerMetricsView, RelevanceView
from kdx_gui.docks.metrics.embedding_view import EmbeddingView
from kdx_gui.docks.metrics.feature_outputs import FeatureOutputs
from kdx_gui.docks.metrics.prediction_view import PredictionView
from kdx_gui.docks.metrics.routing_view import RoutingView
from kdx_gui.docks.metrics.vam_view import VamView
from kdx_gui.state.jobs import JobRunner
from kdx_gui.state.session import Session
from kdx_gui.state.settings import AppSettings


class _LazyTab(QWidget):
    """A tab page that builds its view on demand."""

    def __init__(self, build: Callable[[], QWidget]):
        super().__init__()
        self._build = build
        self.view: QWidget | None = None
        QVBoxLayout(self).setContentsMargins(0, 0, 0, 0)

    def ensure(self) -> QWidget:
        if self.view is None:
            self.view = self._build()
            self.layout().addWidget(self.view)
        return self.view


class MetricsDock(QDockWidget):
    def __init__(self, session: Session, jobs: JobRunner, settings: AppSettings, parent: QWidget | None = None):
        super().__init__("Metrics", parent)
        self.setObjectName("metrics_dock")
        self.tabs = QTabWidget()
        self.predictions = PredictionView(session)
        self.dataset_runner = DatasetMetricsRunner(session, jobs, settings)
        self.feature_outputs = FeatureOutputs(session, jobs, self)
        self._pages = {
            "dark_knowledge": _LazyTab(lambda: DarkKnowledgeView(session, self.feature_outputs)),
            "embeddings": _LazyTab(lambda: EmbeddingView(session, jobs, self.feature_outputs)),
            "layers": _LazyTab(lambda: LayerMetricsView(session, self.dataset_runner)),
            "relevance": _LazyTab(lambda: RelevanceView(session)),
            "vam": _LazyTab(lambda: VamView(session, settings)),
            "routing": _LazyTab(lambda: RoutingView(session, settings)),
            "concepts": _LazyTab(lambda: ConceptsView(session, jobs)),
        }
        self.tabs.addTab(self.predictions, "Predictions")
        for key, title in (("dark_knowledge", "Dark knowledge"), ("embeddings", "Embeddings"), ("layers", "Layers"),
                           ("relevance", "Relevance"), ("vam", "VAM"), ("routing", "KDExplainer"),
                           ("concepts", "Concepts")):
            self.tabs.addTab(self._pages[key], title)
        self.tabs.currentChanged.connect(self._build_current)
        self.setWidget(self.tabs)

    def _build_current(self, index: int) -> None:
        page = self.tabs.widget(index)
        if isinstance(page, _LazyTab):
            page.ensure()

    def show_tab(self, key: str) -> QWidget:
        """Bring a tab to the front (building it if needed) and return its view."""
        page = self._pages.get(key)
        self.tabs.setCurrentWidget(page if page is not None else self.predictions)
        return page.ensure() if page is not None else self.predictions

    @property
    def dark_knowledge(self) -> DarkKnowledgeView:
        return self._pages["dark_knowledge"].ensure()

    @property
    def embeddings(self) -> EmbeddingView:
        return self._pages["embeddings"].ensure()

    @property
    def layers(self) -> LayerMetricsView:
        return self._pages["layers"].ensure()

    @property
    def relevance(self) -> RelevanceView:
        return self._pages["relevance"].ensure()

    @property
    def vam(self) -> VamView:
        return self._pages["vam"].ensure()

    @property
    def routing(self) -> RoutingView:
        return self._pages["routing"].ensure()

    @property
    def concepts(self) -> ConceptsView:
        return self._pages["concepts"].ensure()
