"""Beam jobs (preprocess, score): each a ``run(argv)`` with Beam options passed through."""
