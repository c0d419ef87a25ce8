#!/usr/bin/env bash
# Set up village-monitor on a fresh Debian 12 / Ubuntu machine. Idempotent: re-running skips what is done.
#   scripts/setup.sh           system packages for the engine, the Python venv (.venv), the offline model
#   scripts/setup.sh --test    also what the test suite needs (RTSP server, PulseAudio, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE_APT=(ffmpeg redis-server portaudio19-dev libgl1 libglib2.0-0 espeak-ng sox)
TEST_APT=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-tools pulseaudio pulseaudio-utils iproute2 util-linux sip-tester openssl
          chromium fonts-wqy-zenhei etcd-server python3.11-venv)
PYTHON=${PYTHON:-python3}

packages=("${ENGINE_APT[@]}")
[[ "${1:-}" == "--test" ]] && packages+=("${TEST_APT[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.village-monitor-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "==> pip: installing village-monitor and its dependencies (first time: a few minutes)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

if [[ "${1:-}" == "--test" ]]; then
  # The stand-in Triton server of tests/support/triton.py: nvidia-pytriton's wheel bundles a real tritonserver
  # whose Python backend runs on Debian's Python 3.11 (not the project's interpreter), so it gets its own venv.
  triton_pkgs=(nvidia-pytriton==0.7.0 onnxruntime numpy)
  if [[ ! -f .triton-venv/.installed || $(cat .triton-venv/.installed) != "${triton_pkgs[*]}" ]]; then
    echo "==> .triton-venv: Triton stand-in for the tests (${triton_pkgs[*]})"
    /usr/bin/python3.11 -m venv .triton-venv
    .triton-venv/bin/pip install -q "${triton_pkgs[@]}"
    echo "${triton_pkgs[*]}" > .triton-venv/.installed
  fi
fi

echo "==> offline default model (hash-checked)"
.venv/bin/python -c "from detectors.model_fetch import main; raise SystemExit(main())"
