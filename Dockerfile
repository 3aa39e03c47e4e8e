# tracekws: offline keyword spotting service (FastAPI + spiking network, CPU torch).
# Builds for linux/amd64 and linux/arm64 (Raspberry Pi 4/5 with a 64-bit OS):
#   docker build -t tracekws .                                   # on the Pi itself
#   docker build --platform linux/arm64 -t tracekws:arm64 .      # elsewhere, with qemu/binfmt
# BASE must be a Debian bookworm image with python3 (3.11) and pip; deploy/verify-arm64.sh
# passes a debootstrapped one because it cannot pull from Docker Hub.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRACEKWS_DATA_DIR=/data

WORKDIR /app
# PortAudio for `tracekws listen` from a microphone (sounddevice loads it when listening;
# run with --device /dev/snd and --group-add audio to reach a sound card)
RUN apt-get update && apt-get install -y --no-install-recommends libportaudio2 \
 && rm -rf /var/lib/apt/lists/*
# 1. Dependencies, cached until pyproject.toml or the install script change: the README's
#    install script, into the image's interpreter (no venv), on an empty skeleton of the
#    package. It pins CPU-only torch per architecture (aarch64: torch/torchaudio 2.10.0).
#    torch's C++ headers and test binaries (~190 MB) are not used at run time: dropped.
COPY pyproject.toml /app/
COPY scripts/install.sh /app/scripts/
RUN for d in tracekws model model/rules model/bench service service/routes service/bench pretrained; \
      do mkdir -p "$d" && touch "$d/__init__.py"; done && touch README.md \
 && TRACEKWS_VENV=none bash scripts/install.sh \
 && rm -rf /app/tracekws /app/model /app/service /app/pretrained /app/README.md /app/*.egg-info \
 && t="$(python3 -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))')" \
 && rm -rf "$t/include" "$t/test" \
 && find "$t/bin" -type f ! -name torch_shm_manager -delete \
 && useradd --uid 10001 --user-group --no-log-init --home-dir /home/tracekws --create-home \
        --shell /usr/sbin/nologin tracekws \
 && mkdir -p /data && chown tracekws:tracekws /data && chmod 0700 /data

# 2. tracekws itself (the same script again: torch and the dependencies are already there).
#    Bytecode is compiled here because the app user cannot write to /app at run time.
COPY . /app
RUN TRACEKWS_VENV=none bash scripts/install.sh \
 && python3 -m compileall -q /app/tracekws /app/model /app/service

USER tracekws
# SQLite database (WAL mode: tracekws.db, -wal, -shm), spool files, opted-in recordings.
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request\ntry:\n    ok = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=8).status == 200\nexcept Exception as e:\n    print(e)\n    ok = False\nsys.exit(0 if ok else 1)"]
LABEL org.opencontainers.image.title="tracekws" \
      org.opencontainers.image.description="Offline keyword spotting with a spiking network you personalise on-device" \
      org.opencontainers.image.licenses="Apache-2.0"
# One uvicorn worker: the process holds the model cache and the per-profile adaptation locks.
ENTRYPOINT ["tracekws"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
