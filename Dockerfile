# A Dataflow custom SDK container: Beam's Python 3.11 SDK image with ctrflow and its pinned stack
# preinstalled, so workers start without pip installs (Beam recommends containers for TensorFlow-sized
# dependencies). Build and push (see README, "Running on Dataflow"):
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/ctrflow:0.2.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/ctrflow:0.2.0
#
# then run any job with --sdk_container_image REGION-docker.pkg.dev/PROJECT/REPO/ctrflow:0.2.0.
# The Beam version of the image must equal the one that launches the job (apache-beam 2.77.0).

# ---- stage 1: the ctrflow wheel, built from this checkout (the same `pip wheel .` as a release)
FROM apache/beam_python3.11_sdk:2.77.0 AS wheel
WORKDIR /src
COPY setup.py pyproject.toml README.md ./
COPY ctrflow/ ctrflow/
COPY schemas/ schemas/
COPY pipeline/ pipeline/
COPY model/ model/
COPY beam_jobs/ beam_jobs/
COPY data/ data/
RUN pip wheel --no-deps --no-cache-dir -w /dist .

# ---- stage 2: the worker image
FROM apache/beam_python3.11_sdk:2.77.0
COPY --from=wheel /dist/ /tmp/dist/
# The stack ctrflow is tested with, pinned exactly (setup.py allows the compatible ranges).
RUN pip install --no-cache-dir /tmp/dist/ctrflow-*.whl \
        "apache-beam[gcp]==2.77.0" \
        "tensorflow==2.21.0" \
        "tensorflow-transform==1.21.0" \
        "tfx-bsl==1.21.0" \
        "tensorflow-metadata==1.21.0" \
        "keras==3.15.1" \
        "tensorboard==2.21.0" \
        "numpy==2.4.6" \
        "pandas==3.1.1" \
        "pyarrow==25.0.1" \
        "pyyaml==6.0.3" \
        "matplotlib==3.11.2" \
    && rm -rf /tmp/dist \
    && python -c "import ctrflow.beam_jobs.scoring.job, ctrflow.model.export"
# Beam's boot program stays the entry point (inherited from the base image).
