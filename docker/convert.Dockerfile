# syntax=docker/dockerfile:1
# shardkit converter image: Apache Beam's official Python 3.11 SDK container with shardkit installed.
#
#   docker build -f docker/convert.Dockerfile -t shardkit-convert:0.1.0 .
#
# Worker image: pass it as --sdk_container_image (Dataflow) or --environment_config (Flink/Spark, DOCKER
# environment); the entrypoint stays Beam's SDK harness boot (/opt/apache/beam/boot), so the runner can
# start it as usual (also as an EXTERNAL worker pool: `docker run IMAGE --worker_pool`).
# Launcher: `docker run --entrypoint shardkit-convert IMAGE INPUT --out OUT ... -- BEAM_ARGS`.
# Dask: the `dask` extra is installed too, so `docker run --entrypoint dask IMAGE scheduler|worker ...`
# gives a cluster for Beam's DaskRunner with exactly the launcher's code (docs/operations.md).
# The Beam and TensorFlow versions must stay inside pyproject.toml's ranges (tests/test_docker_lint.py checks).
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

ARG BEAM_VERSION
ARG TF_VERSION=2.21.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/shardkit/src
COPY pyproject.toml README.md ./
COPY shardkit/ shardkit/
COPY convert/ convert/
COPY train/ train/

# The constraints keep the SDK image's Beam (the worker must match the launcher) and pin TensorFlow.
RUN printf 'apache-beam==%s\ntensorflow-cpu==%s\n' "${BEAM_VERSION}" "${TF_VERSION}" > /tmp/constraints.txt \
    && pip install --no-cache-dir --constraint /tmp/constraints.txt ".[convert,cpu,dask]" \
    && pip check \
    && python -c "import apache_beam, tensorflow, shardkit.convert; assert apache_beam.__version__ == '${BEAM_VERSION}', apache_beam.__version__" \
    && rm /tmp/constraints.txt

WORKDIR /
ENTRYPOINT ["/opt/apache/beam/boot"]
