"""Operator tools beside the server: ``edgeproxy replay`` (what-if cache simulator) and ``edgeproxy top``."""
