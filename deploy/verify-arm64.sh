#!/usr/bin/env bash
# Build the tracekws linux/arm64 (Raspberry Pi) image on a Debian x86-64 machine and check it
# under qemu emulation. No Docker Hub: the base is a debootstrapped Debian bookworm arm64
# rootfs with python3 (the Dockerfile's default base, python:3.11-slim-bookworm, is what a Pi
# pulls). Runs the image with --network none and checks, inside the container:
#   /healthz and /readyz; /predict on real clips gives the label the host's x86-64 install
#   gives (clips the shipped model gets right); /adapt creates a version; the server runs as
#   a non-root user; the Docker HEALTHCHECK turns healthy; after the container is stopped,
#   removed and started again on the same volume, the profile's versions are all still there;
#   an online backup of the SQLite database, restored into a new volume as deploy/README.md
#   says, serves the same versions.
# Prints the image size and the EMULATED timings (qemu on this host, not Raspberry Pi speed).
#
# Needs root (or passwordless sudo), Debian apt (installs docker.io, qemu-user-static,
# binfmt-support, debootstrap when missing) and PyPI/Debian mirrors for the build.
# Starts dockerd if none answers and stops it again; stops every container it started.
# Heavy steps run under `nice -n 19`. Cache: the debootstrapped rootfs tarball under
# ${TRACEKWS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tracekws} (works without it).
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), TRACEKWS_CACHE_DIR,
#   TRACEKWS_VERIFY_KEEP=1 keeps the container and volume for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n -E bash "$0" "$@"
  fi
  echo "verify-arm64: needs root (apt-get, dockerd, binfmt_misc, debootstrap)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive DOCKER_BUILDKIT=0 DOCKER_CLI_HINTS=false
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_REV=1  # bump when the base recipe below changes (invalidates the cache)
CACHE_DIR="${TRACEKWS_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tracekws}"
ROOTFS_TAR="$CACHE_DIR/debian-$SUITE-arm64-python3-r$BASE_REV.tar.gz"
IMAGE=tracekws:verify-arm64
LABEL=tracekws.verify-arm64
NAME=tracekws-verify-$$
VOLUME=tracekws-verify-data-$$
NICE=(nice -n 19)
WORK="$(mktemp -d /tmp/tracekws-verify.XXXXXX)"
DOCKERD_PID=""
T0=$SECONDS

log() { printf '\n== %s\n' "$*"; }
die() { printf '\nverify-arm64: FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

cleanup() {
  local rc=$?
  set +e
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    if [ "${TRACEKWS_VERIFY_KEEP:-0}" = 1 ] && [ "$rc" != 0 ]; then
      echo "verify-arm64: kept containers/volume labelled $LABEL for inspection" >&2
    else
      for c in $(docker ps -aq --filter "label=$LABEL" 2>/dev/null); do
        docker rm -f "$c" >/dev/null 2>&1
      done
      for v in $(docker volume ls -q --filter "label=$LABEL" 2>/dev/null); do
        docker volume rm "$v" >/dev/null 2>&1
      done
    fi
  fi
  # debootstrap mounts proc/sys in the rootfs; make sure nothing stays mounted if interrupted
  if [ -d "$WORK/rootfs" ]; then
    for m in $(awk -v w="$WORK/rootfs" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$m"
    done
  fi
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill -TERM "$DOCKERD_PID"  # dockerd stops the containerd it started itself
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. host tools -------------
log "host tools"
pkgs=()
command -v dockerd >/dev/null || pkgs+=(docker.io)
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
command -v update-binfmts >/dev/null || pkgs+=(binfmt-support)
[ -x /usr/bin/qemu-aarch64-static ] || pkgs+=(qemu-user-static)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing ${pkgs[*]}"
  "${NICE[@]}" apt-get update -qq
  "${NICE[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
command -v docker >/dev/null || die "no docker client after installing docker.io"

# qemu-aarch64 via binfmt_misc, with the F flag so it works inside containers and chroots
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  update-binfmts --enable qemu-aarch64
fi
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 binfmt not enabled"
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
  || die "qemu-aarch64 binfmt lacks the F (fix-binary) flag; reinstall qemu-user-static"

if docker info >/dev/null 2>&1; then
  echo "using the running Docker daemon"
else
  echo "starting dockerd (stopped again on exit)"
  "${NICE[@]}" dockerd --pidfile "$WORK/dockerd.pid" >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$WORK/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; die "dockerd did not start"; }
fi
# leftovers of an earlier run that was killed before its cleanup
for c in $(docker ps -aq --filter "label=$LABEL"); do docker rm -f "$c" >/dev/null; done
for v in $(docker volume ls -q --filter "label=$LABEL"); do docker volume rm "$v" >/dev/null; done

# host x86-64 install: the reference predictions come from it
[ -f pretrained/tracekws-gsc12.safetensors ] \
  || die "pretrained/tracekws-gsc12.safetensors is missing (the image ships it)"
if [ ! -x .venv/bin/tracekws ]; then
  log "host install (scripts/install.sh)"
  "${NICE[@]}" bash scripts/install.sh
fi

# ---------------------------------------------------------------- 2. arm64 base -------------
# A Debian bookworm arm64 rootfs with python3 3.11 + pip, shaped like python:3.11-slim: pip may
# install into the system interpreter (no EXTERNALLY-MANAGED), no docs/apt lists. Cached.
T_BASE=$(now)
if [ -s "$ROOTFS_TAR" ]; then
  log "arm64 base: cached rootfs $ROOTFS_TAR"
else
  log "arm64 base: debootstrap $SUITE arm64 (second stage runs under emulation, ~5 min)"
  rootfs="$WORK/rootfs"
  "${NICE[@]}" debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-pip,ca-certificates "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap (first stage) failed"; }
  "${NICE[@]}" chroot "$rootfs" /debootstrap/debootstrap --second-stage >>"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap (second stage) failed"; }
  rm -rf "$rootfs/debootstrap" "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  mkdir -p "$CACHE_DIR"
  "${NICE[@]}" tar --numeric-owner -C "$rootfs" -czf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$rootfs"
fi

# docker-load archive: one layer (the rootfs, with this host's CA bundle so pip trusts the
# same TLS proxies the host does), config labelled linux/arm64/v8. Deterministic: the same
# rootfs and CA bundle give the same image id, so the build cache of an earlier run applies.
CA=/etc/ssl/certs/ca-certificates.crt
BASE_IMAGE="tracekws-verify-base:$SUITE-arm64-r$BASE_REV-$( { sha256sum "$ROOTFS_TAR" | cut -c1-16; [ -f "$CA" ] && sha256sum "$CA"; } | sha256sum | cut -c1-12)"
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE already loaded"
else
  mkdir -p "$WORK/base"
  "${NICE[@]}" python3 - "$ROOTFS_TAR" "$CA" "$WORK/base" "$BASE_IMAGE" <<'PY'
import hashlib, io, json, os, sys, tarfile
src, ca, out, tag = sys.argv[1:5]
ca_data = open(ca, "rb").read() if os.path.isfile(ca) else None

class Hashing(io.RawIOBase):
    def __init__(self, f): self.f, self.h = f, hashlib.sha256()
    def writable(self): return True
    def write(self, b): self.h.update(b); return self.f.write(b)

with tarfile.open(src, "r:gz") as tin, open(f"{out}/layer.tar", "wb") as f:
    hw = Hashing(f)
    with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tout:
        for m in tin:
            if ca_data is not None and m.name.lstrip("./") == "etc/ssl/certs/ca-certificates.crt":
                m.size = len(ca_data)
                tout.addfile(m, io.BytesIO(ca_data))
            elif m.isreg():
                tout.addfile(m, tin.extractfile(m))
            else:
                tout.addfile(m)
    diff_id = "sha256:" + hw.h.hexdigest()
config = {
    "architecture": "arm64", "variant": "v8", "os": "linux",
    "created": "2000-01-01T00:00:00Z",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "LANG=C.UTF-8"], "Cmd": ["python3"]},
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created": "2000-01-01T00:00:00Z",
                 "created_by": "debootstrap --variant=minbase bookworm arm64 + python3 (tracekws verify-arm64)"}],
}
data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
name = hashlib.sha256(data).hexdigest() + ".json"
open(f"{out}/{name}", "wb").write(data)
json.dump([{"Config": name, "RepoTags": [tag], "Layers": ["layer.tar"]}],
          open(f"{out}/manifest.json", "w"))
PY
  tar -C "$WORK/base" -c . | "${NICE[@]}" docker load -q
  rm -rf "$WORK/base"
fi
[ "$(docker image inspect -f '{{.Architecture}}' "$BASE_IMAGE")" = arm64 ] || die "base image is not arm64"
docker run --rm --network none --platform linux/arm64 "$BASE_IMAGE" \
  python3 -c "import platform; assert platform.machine() == 'aarch64', platform.machine()" \
  || die "cannot run the arm64 base under emulation"
T_BASE_DONE=$(now)

# ---------------------------------------------------------------- 3. build ------------------
log "docker build --platform linux/arm64 (emulated; pip installs torch 2.10.0 CPU for aarch64)"
T_BUILD=$(now)
"${NICE[@]}" docker build --platform linux/arm64 --build-arg "BASE=$BASE_IMAGE" \
  -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; die "docker build failed"; }
grep -E '^(Step |Successfully)|Using cache' "$WORK/build.log" | cut -c1-100 | sed 's/^/  /'
grep -F 'tracekws installed:' "$WORK/build.log" | tail -1 | sed 's/^/  /' || true
T_BUILD_DONE=$(now)
[ "$(docker image inspect -f '{{.Architecture}}' "$IMAGE")" = arm64 ] || die "image is not arm64"
# dangling images of earlier builds of this script
docker image prune -f --filter "label=org.opencontainers.image.title=tracekws" >/dev/null || true

# ---------------------------------------------------------------- 4. reference labels -------
log "host (x86-64) predictions with the same model, to compare against"
mapfile -t cands < <(ls tests/data/gsc/{yes,no,up,down,left,right,on,off,stop,go}/*.flac)
TORCH_NUM_THREADS=1 "${NICE[@]}" .venv/bin/tracekws predict "${cands[@]}" >"$WORK/host.tsv"
# /predict: the three most confident correct clips of distinct words. /adapt: a keyword clip
# the model gets wrong (or else its least confident one), with its true word: a realistic
# personalisation sample
read -r -a PICK < <(python3 - "$WORK/host.tsv" <<'PY'
import os, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
rows = [(f, lab, float(p), os.path.basename(os.path.dirname(f))) for f, lab, p in rows]
right = sorted((r for r in rows if r[1] == r[3]), key=lambda r: -r[2])
picked, words = [], set()
for f, lab, p, word in right:
    if word not in words:
        picked.append(f"{f}={lab}"); words.add(word)
    if len(picked) == 3:
        break
if not picked:
    sys.exit("the model gets none of the test clips right")
f, lab, p, word = min(rows, key=lambda r: r[2] if r[1] == r[3] else -1.0)
print(" ".join(picked + [f"{f}={word}"]))
PY
)
[ ${#PICK[@]} -ge 2 ] || die "could not pick clips"
ADAPT_SPEC=${PICK[-1]}; unset 'PICK[-1]'
printf '  predict: %s (host label)\n' "${PICK[@]}"
echo "  adapt:   $ADAPT_SPEC"
NATIVE_MS=$(TORCH_NUM_THREADS=1 "${NICE[@]}" .venv/bin/tracekws bench infer --repeats 20 --json \
  | python3 -c "import json, sys; print(json.load(sys.stdin)['ms_per_clip_median'])") || NATIVE_MS=""

# payload copied into the container: the client and the clips (container paths)
mkdir -p "$WORK/payload"
cp deploy/verify-client.py "$WORK/payload/"
clip_args=()
for spec in "${PICK[@]}" "$ADAPT_SPEC"; do
  f=${spec%=*}; lab=${spec##*=}; dest="$(basename "$(dirname "$f")")-$(basename "$f")"
  cp "$f" "$WORK/payload/$dest"
  if [ "$spec" = "$ADAPT_SPEC" ]; then clip_args+=(--adapt "/tmp/verify/$dest=$lab")
  else clip_args+=(--clip "/tmp/verify/$dest=$lab"); fi
done
chmod -R a+rX "$WORK/payload"

start_container() {  # name volume; records T_RUN
  T_RUN=$(now)
  docker run -d --name "$1" --label "$LABEL" --platform linux/arm64 --network none \
    -v "$2:/data" "$IMAGE" >/dev/null
  docker cp "$WORK/payload" "$1:/tmp/verify"
}
client() {  # name tag phase args... → client output in $WORK/<tag>.out, results <tag>.json
  local name=$1 tag=$2 phase=$3; shift 3
  if ! docker exec "$name" python3 /tmp/verify/verify-client.py "$phase" "$@" \
      >"$WORK/$tag.out" 2>&1; then
    sed 's/^/  /' "$WORK/$tag.out"
    echo "  --- container log (tail)"; docker logs --tail 30 "$name" 2>&1 | sed 's/^/  /'
    die "in-container checks ($tag) failed"
  fi
  grep -v '^RESULT ' "$WORK/$tag.out" | sed 's/^/  /'
  grep '^RESULT ' "$WORK/$tag.out" | cut -c8- >"$WORK/$tag.json"
}
jget() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))" "$@"; }

# ---------------------------------------------------------------- 5. run and check ---------
log "run 1: docker run --network none -v <volume>:/data (emulated)"
docker volume create --label "$LABEL" "$VOLUME" >/dev/null
start_container "$NAME-a" "$VOLUME"
client "$NAME-a" first first --profile verify "${clip_args[@]}" --repeats 5
START1=$(secs "$T_RUN" "$(jget "$WORK/first.json" ready_at)")
# the image's own HEALTHCHECK (interval 30 s) must report healthy
for _ in $(seq 90); do
  HEALTH=$(docker inspect -f '{{.State.Health.Status}}' "$NAME-a")
  [ "$HEALTH" = healthy ] && break
  [ "$HEALTH" = unhealthy ] && die "HEALTHCHECK reports unhealthy"
  sleep 2
done
[ "$HEALTH" = healthy ] || die "HEALTHCHECK did not report healthy within 180 s (status: $HEALTH)"
echo "  ok   HEALTHCHECK: healthy; user: $(docker inspect -f '{{.Config.User}}' "$IMAGE")"
# the image's other commands and the libraries they load: PortAudio (tracekws listen), the
# wyoming package (tracekws wyoming), prometheus-client (/metrics), silero-vad's network (/adapt)
docker exec "$NAME-a" python3 -c "import sounddevice, wyoming, prometheus_client
from tracekws.model.vad import SileroVAD
SileroVAD()
print('  ok   libraries load:', sounddevice.get_portaudio_version()[1].split(',')[0],
      '| wyoming | prometheus-client | silero-vad network')" \
  || die "a library of the image does not load"
LISTEN_CLIP=${clip_args[1]%=*}
docker exec "$NAME-a" tracekws listen --file "$LISTEN_CLIP" --fast --json >/dev/null \
  || die "tracekws listen --file fails in the image"
docker exec "$NAME-a" tracekws wyoming --help >/dev/null || die "tracekws wyoming fails in the image"
echo "  ok   tracekws listen --file runs on a clip; tracekws wyoming --help"

log "online backup of the database while it serves (sqlite3 backup API, as in deploy/README.md)"
docker exec "$NAME-a" python3 -c "import sqlite3
src = sqlite3.connect('/data/tracekws.db'); dst = sqlite3.connect('/tmp/tracekws-backup.db')
src.backup(dst); dst.close(); src.close()"
mkdir -p "$WORK/backup"
docker cp "$NAME-a:/tmp/tracekws-backup.db" "$WORK/backup/tracekws-backup.db"
docker exec "$NAME-a" rm /tmp/tracekws-backup.db
echo "  ok   backup: $(stat -c %s "$WORK/backup/tracekws-backup.db") bytes"

log "replace the container (stop, rm, run again on the same volume: what an upgrade does)"
docker stop -t 60 "$NAME-a" >/dev/null
# uvicorn shuts the app down, then `tracekws serve` exits 0 (143 would also be a clean stop)
EXIT1=$(docker inspect -f '{{.State.ExitCode}}' "$NAME-a")
# the logs are read whole first: `docker logs | grep -q` under pipefail fails at random when
# grep exits on its match and docker logs, still writing, dies of SIGPIPE
LOGS_A=$(docker logs "$NAME-a" 2>&1)
if ! { [ "$EXIT1" = 0 ] || [ "$EXIT1" = 143 ]; } \
    || ! grep -q "Application shutdown complete" <<<"$LOGS_A"; then
  tail -n 20 <<<"$LOGS_A" | sed 's/^/  /'
  die "no clean shutdown on SIGTERM (exit status $EXIT1)"
fi
echo "  ok   clean shutdown on SIGTERM (exit status $EXIT1, 'Application shutdown complete')"
docker rm "$NAME-a" >/dev/null
start_container "$NAME-b" "$VOLUME"
VERSIONS=$(python3 -c "import json, sys; print(json.dumps(json.load(open(sys.argv[1]))['versions']))" "$WORK/first.json")
ADAPT_CLIP=${clip_args[-1]}  # the clip the profile was adapted on
client "$NAME-b" restart second --profile verify --expect-versions "$VERSIONS" \
  --clip "$ADAPT_CLIP" --what "after replacing the container"
START2=$(secs "$T_RUN" "$(jget "$WORK/restart.json" ready_at)")
docker rm -f "$NAME-b" >/dev/null

log "restore the backup into a new volume (as in deploy/README.md) and start on it"
docker volume create --label "$LABEL" "$VOLUME-r" >/dev/null
docker run --rm --label "$LABEL" --platform linux/arm64 --network none --user 0 \
  -v "$VOLUME-r:/data" -v "$WORK/backup:/backup:ro" --entrypoint sh "$IMAGE" -c \
  'cp /backup/tracekws-backup.db /data/tracekws.db && rm -f /data/tracekws.db-wal /data/tracekws.db-shm && chown tracekws:tracekws /data/tracekws.db && chmod 0600 /data/tracekws.db'
start_container "$NAME-c" "$VOLUME-r"
client "$NAME-c" restore second --profile verify --expect-versions "$VERSIONS" \
  --clip "$ADAPT_CLIP" --what "restored from the backup"
START3=$(secs "$T_RUN" "$(jget "$WORK/restore.json" ready_at)")
docker rm -f "$NAME-c" >/dev/null

# ---------------------------------------------------------------- 6. report -----------------
SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE")
BSIZE=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
P_SERVER=$(jget "$WORK/first.json" predict_server_ms_median)
P_WALL=$(jget "$WORK/first.json" predict_wall_ms_median)
A_SERVER=$(jget "$WORK/first.json" adapt_server_ms)
A_AUDIO=$(jget "$WORK/first.json" adapt_audio_s)
python3 - "$SIZE" "$BSIZE" "$(secs "$T_BASE" "$T_BASE_DONE")" "$(secs "$T_BUILD" "$T_BUILD_DONE")" \
  "$START1" "$START2 / $START3" "$P_SERVER" "$P_WALL" "$A_SERVER" "$A_AUDIO" "${NATIVE_MS:-nan}" \
  "$((SECONDS - T0))" "$IMAGE" <<'PY'
import sys
(size, bsize, t_base, t_build, s1, s2, p_srv, p_wall, a_srv, a_audio, native, total,
 image) = sys.argv[1:]
size, bsize = int(size) / 1e6, int(bsize) / 1e6
p_srv, native = float(p_srv), float(native)
print(f"""
== verify-arm64: PASSED
image        {image}  linux/arm64  {size:.0f} MB
             ({size - bsize:.0f} MB on top of the debootstrapped base of {bsize:.0f} MB; on a Pi the
             base is python:3.11-slim-bookworm instead)

EMULATED timings: qemu-user aarch64 on this x86-64 host (2 shared cores, nice 19).
These prove the image works; they are NOT Raspberry Pi speed (see deploy/README.md for
the Pi estimate).
  arm64 base (debootstrap or cache)     {float(t_base):8.1f} s
  docker build                          {float(t_build):8.1f} s
  container start -> /readyz 200        {float(s1):8.1f} s  (restart / restore: {s2} s)
  /predict, 1 s clip (median of 5)      {p_srv:8.1f} ms in the server, {float(p_wall):.1f} ms wall
  /adapt (TP), {float(a_audio):.2f} s clip               {float(a_srv) / 1000:8.1f} s""")
if native == native:
    print(f"  native x86-64 model.predict, 1 thread {native:8.1f} ms  "
          f"(emulation ~{p_srv / native:.0f}x slower than native, server overhead included)")
print(f"script total {int(total)} s")
PY
