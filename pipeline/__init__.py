"""Feature pipeline logic: parsing raw rows, the schema-driven tf.Transform
preprocessing_fn, the model-facing feature layout and feature profiles.

Pure functions and TF graph code only; the Beam wiring lives in ``beam_jobs``.
"""
