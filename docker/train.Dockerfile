# syntax=docker/dockerfile:1
# shardkit trainer image: TensorFlow's official GPU image with shardkit's reader and trainer installed.
#
#   docker build -f docker/train.Dockerfile -t shardkit-train:0.1.0 .
#   docker run --gpus all -v /data:/data:ro -v "$PWD/runs:/runs" shardkit-train:0.1.0 \
#       fit /data/knots --model knot-cnn --epochs 10 --batch-size 64 --out /runs/knots
#
# Only the `train` extra is installed: no Beam, no PyTables, and the image's own TensorFlow (with its
# CUDA libraries) is kept as is. The TensorFlow version must stay inside pyproject.toml's range.
ARG TF_VERSION=2.21.0
FROM tensorflow/tensorflow:${TF_VERSION}-gpu

ARG TF_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=1

WORKDIR /opt/shardkit/src
COPY pyproject.toml README.md ./
COPY shardkit/ shardkit/
COPY convert/ convert/
COPY train/ train/

# Everything the base image already has is frozen as a constraint, so pip can add matplotlib but never
# replace TensorFlow, Keras, numpy or protobuf. PIP_BREAK_SYSTEM_PACKAGES: TensorFlow lives in the image's
# system Python, which newer Ubuntu bases mark as externally managed (PEP 668).
RUN python3 -m pip list --format=freeze > /tmp/base-constraints.txt \
    && PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir --constraint /tmp/base-constraints.txt ".[train]" \
    && python3 -m pip check \
    && python3 -c "import tensorflow as tf, shardkit.train; assert tf.__version__ == '${TF_VERSION}', tf.__version__" \
    && rm /tmp/base-constraints.txt \
    && useradd --no-log-init --create-home --uid 10001 --user-group --shell /usr/sbin/nologin shardkit \
    && mkdir -p /runs \
    && chown shardkit:shardkit /runs

USER 10001:10001
ENV HOME=/home/shardkit \
    MPLCONFIGDIR=/home/shardkit/.config/matplotlib
WORKDIR /runs
ENTRYPOINT ["shardkit-train"]
CMD ["--help"]
