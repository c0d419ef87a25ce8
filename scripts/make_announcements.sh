#!/bin/sh
# Regenerate announcements/disperse_{zh,en}.wav with espeak-ng + sox (see announcements/README.md).
# Output is byte-for-byte reproducible for a given espeak-ng/sox version (sox -D: no random dither).
set -eu

OUT="${1:-$(cd "$(dirname "$0")/.." && pwd)/announcements}"
ZH_TEXT="请不要聚集，请保持距离，尽快散开。"
EN_TEXT="Please do not gather here. Keep your distance and move on."

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install espeak-ng sox" >&2; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Mandarin: the cmn-latn-pinyin voice, NOT "-v cmn"/"-v zh" (those read the tone digits as English words).
espeak-ng -v cmn-latn-pinyin -s 150 -w "$TMP/zh_raw.wav" "$ZH_TEXT"
espeak-ng -v en-us -s 150 -w "$TMP/en_raw.wav" "$EN_TEXT"

mkdir -p "$OUT"
for lang in zh en; do
    # 16 kHz mono signed 16-bit, normalised to a -1 dBFS peak.
    sox -D "$TMP/${lang}_raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$OUT/disperse_${lang}.wav" gain -n -1
done
echo "wrote $OUT/disperse_zh.wav $OUT/disperse_en.wav"
