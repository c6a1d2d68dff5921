"""Runnable edge-function examples (see docs/edge-functions.md). Each module's docstring shows the YAML
that uses it; run an edge from the repository root so that ``examples.functions.*`` can be imported."""
