"""The Metrics dock: predictions, dataset metrics (Layers, Relevance), VAM and KDExplainer tabs."""
