#!/usr/bin/env bash
# The GPU path in one go (issue #15): set up what is missing, then measure on one NVIDIA GPU
#   - TensorRT FP16 through the project's export path (detectors/export.py, detectors/backends.py), and INT8
#     when GPU_BENCH_INT8_DATA names a calibration dataset yaml, against the Ultralytics peer on the same GPU;
#   - Ultralytics fp16 batched across cameras (one call per pass, as the engine batches) vs the per-camera
#     peer loop YOLO(pt).predict(source, stream=True, half=True, device=0), batch 1/8/32/64, imgsz 640;
#   - PyAV decoding of many concurrent streams with and without NVDEC (hwaccel=HWAccel("cuda"), h264_cuvid),
#     on sample_videos/square.mp4 and a 1080p H.264 clip made on the spot;
#   - cameras held at 2 det/s for the peer and the engine, the engine measured end to end on 1080p file cameras
#     with hwaccel none (CPU decoding) and cuda (NVDEC, the engine's own hwaccel setting); device, CPU, versions.
# Details of each measurement: the docstring of bench/gpu_bench.py. Results: OUT_DIR/gpu_bench.json and
# OUT_DIR/gpu_bench.log (default OUT_DIR: $OUT, else /tmp/gpu-bench-out).
#
# Usage (from anywhere; use a virtualenv whose torch has CUDA):
#   bench/gpu.sh [OUT_DIR] [extra gpu_bench.py arguments, e.g. --quick, --budget-s 300,
#                           --parts env,detect,auto --batches 1,8,32 (auto selection + detector only)]
# Environment:
#   PYTHON=python3            interpreter to use
#   GPU_BENCH_WHEELS=.whl     offline wheels (installed with --no-deps into a private --target dir when
#                             something is missing and the machine is offline)
#   GPU_BENCH_OFFLINE=1       never touch the network (else pip installs what is missing when PyPI answers)
#   GPU_BENCH_TRT=0           do not pip-install tensorrt when online
#   GPU_BENCH_INT8_DATA=...   dataset yaml for INT8 calibration (Ultralytics export int8=True data=...)
#
# Offline machines: tensorrt cannot be carried as wheels (its libraries are GBs; a lent machine takes 64 MiB
# of files), so there the TensorRT part reports "not measured" and everything else runs. Wheels for an
# offline Python 3.12 x86-64 box without ultralytics/av/pydantic (pip download run on a machine with network):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99 av==18.1.0 \
#     pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
# (ultralytics 8.4.190 declares polars, but predict/export do not import it; none of these needs it.)
# The engine part (the engine end to end, bench/streams.py's run_engine) imports the engine; add, if missing there:
#     redis==8.1.0 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 prometheus-client==0.26.0 \
#     httpx==0.28.1 httpcore==1.0.9 h11==0.16.0 anyio==4.16.0 idna==3.20 certifi==2026.10.19.post1 pyyaml==6.0.4
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUTDIR=${1:-${OUT:-/tmp/gpu-bench-out}}
[ $# -gt 0 ] && shift
mkdir -p "$OUTDIR" || exit 1
PY=${PYTHON:-python3}
WHEELS=${GPU_BENCH_WHEELS:-.whl}
SITE=${GPU_BENCH_SITE:-/tmp/gpu-bench-site}
LOG="$OUTDIR/gpu_bench.log"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False YOLO_VERBOSE=False PYTHONUNBUFFERED=1
export YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-/tmp/gpu-bench-yolo-config}
export MPLBACKEND=Agg

say() { echo "[gpu.sh $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
: >"$LOG"
say "repo $(pwd), python $($PY -c 'import sys; print(sys.version.split()[0], sys.executable)')"

missing() {  # pip names of what the benchmark imports and this interpreter lacks
    $PY - <<'EOF'
import importlib.util
need = {"ultralytics": "ultralytics==8.4.190", "av": "av>=14", "pydantic": "pydantic>=2.7", "cv2": "opencv-python-headless",
        "yaml": "pyyaml", "torch": "torch", "numpy": "numpy",
        # the engine part imports the engine (bench/streams.py's run_engine)
        "redis": "redis>=5", "rich": "rich>=13", "prometheus_client": "prometheus-client", "httpx": "httpx"}
print(" ".join(v for k, v in need.items() if importlib.util.find_spec(k) is None))
EOF
}

online=0
if [ "${GPU_BENCH_OFFLINE:-0}" != 1 ] && timeout 8 $PY -c \
    "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=6)" >/dev/null 2>&1; then
    online=1
fi
say "online: $online"

need=$(missing)
if [ -n "$need" ]; then
    say "missing: $need"
    if [ $online = 1 ]; then
        $PY -m pip install -q $need onnxslim 2>&1 | tee -a "$LOG"
    elif ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        say "installing carried wheels from $WHEELS into $SITE (--no-deps)"
        if ! $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$WHEELS"/*.whl 2>&1 | tee -a "$LOG"; then
            say "one install failed; installing the wheels one by one"
            for w in "$WHEELS"/*.whl; do
                $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$w" \
                    2>&1 | tee -a "$LOG" || say "could not install $(basename "$w")"
            done
        fi
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    else
        say "offline and no wheels in $WHEELS: the parts needing $need will report errors"
    fi
    need=$(missing)
    [ -n "$need" ] && say "still missing: $need"
fi

# TensorRT: only installable online (GB-sized wheels); the cu<N> build must match torch's CUDA major.
if [ $online = 1 ] && [ "${GPU_BENCH_TRT:-1}" != 0 ] && ! $PY -c "import tensorrt" >/dev/null 2>&1; then
    cu=$($PY -c "import torch; print(torch.version.cuda.split('.')[0] if torch.cuda.is_available() and torch.version.cuda else '')" 2>/dev/null)
    if [ -n "$cu" ]; then
        say "installing tensorrt-cu$cu (and onnxslim for the ONNX step of the engine export)"
        $PY -m pip install -q "tensorrt-cu$cu" onnx onnxslim 2>&1 | tee -a "$LOG" \
            || $PY -m pip install -q tensorrt onnx onnxslim 2>&1 | tee -a "$LOG" || say "tensorrt install failed"
    fi
fi

if [ ! -f models/yolo11n-pose.pt ]; then
    if [ $online = 1 ]; then
        say "fetching the default model"
        $PY -m detectors.model_fetch 2>&1 | tee -a "$LOG"
    else
        say "models/yolo11n-pose.pt is missing and the machine is offline: copy it there first"
    fi
fi

command -v nvidia-smi >/dev/null && nvidia-smi 2>&1 | head -15 | tee -a "$LOG"
say "running bench/gpu_bench.py --out $OUTDIR $*"
PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" $PY bench/gpu_bench.py --out "$OUTDIR" "$@" 2>&1 | tee -a "$LOG"
rc=$?
say "exit $rc; results in $OUTDIR/gpu_bench.json"
exit $rc
