"""Heatmaps of where a run's model looked (Grad-CAM), computed by the worker on request."""
