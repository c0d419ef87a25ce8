#!/usr/bin/env bash
# Set up (if needed) and run the engine on sample_videos/ with the sample streams.yaml and embedded Redis.
# A stand-in horn speaker listens on the sample's RTP port and saves what it hears under data/horn/.
# Extra arguments go to `monitor run` (e.g. --duration 90). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/monitor speaker listen --port 5004 --out data/horn &
horn=$!
trap 'kill $horn 2>/dev/null || true' EXIT
.venv/bin/monitor run -c streams.yaml "$@"
echo
.venv/bin/monitor incidents -c streams.yaml
