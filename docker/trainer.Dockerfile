# Trainer image: Ray (head and GPU workers) plus the local backend's trainer on CUDA, so that a
# Ray Job can run `python -m backends.local.train --run-dir DIR` (docs/deploy.md).
# Ray's own image brings Python 3.11, CUDA and Ray; its version must equal the `ray` pin in
# pyproject.toml's `ray` extra (the same Ray on the head, the workers and the gateway's client).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${RAY_IMAGE}

ARG TORCH_VERSION=2.13.0
# The CUDA build of torch (the Makefile installs the CPU build; this image wants the GPU one).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false \
    HF_HOME=/data/hf-cache

# Ray's image runs as user `ray` (passwordless sudo) with its Python env in its home.
WORKDIR /home/ray/tunebridge
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY --chown=ray pyproject.toml README.md ./
COPY --chown=ray tunebridge ./tunebridge
COPY --chown=ray storage ./storage
COPY --chown=ray backends ./backends
COPY --chown=ray gateway ./gateway
COPY --chown=ray bot ./bot
# The `local` extra brings transformers, peft, trl, accelerate and bitsandbytes (4-bit QLoRA);
# torch is named again so pip keeps the CUDA build installed above.
RUN pip install --no-cache-dir ".[local,ray]" "torch==${TORCH_VERSION}" \
    && python -c "import bitsandbytes, peft, trl, backends.local.train"
# Unsloth where it installs without changing anything already installed (every installed
# version is a constraint); otherwise the trainer runs QLoRA on transformers + peft, and each
# job's result names the path that ran. This step never fails the build.
RUN pip freeze --exclude-editable | grep -v " @ " > /tmp/pins.txt \
    && (pip install --no-cache-dir --constraint /tmp/pins.txt unsloth \
        && python -c "import unsloth" \
        || (echo "unsloth not installed: QLoRA runs on transformers + peft" \
            && pip uninstall --yes unsloth unsloth_zoo >/dev/null 2>&1; true)) \
    && rm -f /tmp/pins.txt
# The shared runs/blobs volume mounts here, at the same path as on the gateways.
RUN sudo mkdir -p /data && sudo chown ray /data
VOLUME /data
# compose passes `ray start --head ...` or `ray start --address=...` (docker/compose.yaml).
CMD ["ray", "start", "--head", "--block", "--dashboard-host=0.0.0.0"]
