"""Beam wiring: each job a ``run(argv)`` whose Beam options pass through, on any runner.

    input/       planning reads of raw tables, format readers, screening bad rows (``ReadRows``)
    preprocess/  the tf.Transform job: analyze, split, transform, write TFRecords
    scoring/     the batch scoring job: the serving SavedModel in a RunInference handler
    outputs/     what jobs write: TFRecords, score tables, profiles, manifests, atomic publishing
    options.py   typed options of both jobs; runners.py builds pipelines; worker_wheel.py ships ctrflow
"""
