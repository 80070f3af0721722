#!/usr/bin/env bash
# A synthetic speech corpus for `mt transcribe train`: sentences spoken by Debian's espeak-ng in several voices, speeds
# and pitches, written as 16 kHz mono 16-bit WAV files with a manifest per split.
#
#   bash scripts/make_speech_corpus.sh [OUT_DIR] [SENTENCES] [--noise]
#
#   OUT_DIR     default data-speech (not committed); gets wav/NNNNN.wav, train.tsv, test.tsv
#   SENTENCES   default 2000: lines of data/tinyshakespeare.txt with 4 to 12 words, letters and . , ' ! ? only
#   --noise     mix white noise at about -40 dB into every clip (needs sox)
#
# Each manifest line is "wav/NNNNN.wav<TAB>voice<TAB>transcript". The test split holds out voices, not only
# sentences: clips spoken by the two held-out voices (en-us+m7, en-us+f4) go to test.tsv and no sentence of test.tsv
# is in train.tsv, so a test WER measures speakers the model never heard. Everything is deterministic (voice, speed
# and pitch follow from the sentence number). espeak-ng (and sox, for 16 kHz and noise) are installed with apt-get
# when missing; without sox the clips stay at espeak-ng's 22,050 Hz, which `mt transcribe` resamples when reading.
set -euo pipefail

OUT=${1:-data-speech}
COUNT=${2:-2000}
NOISE=${3:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TEXT="$REPO/data/tinyshakespeare.txt"

if ! command -v espeak-ng >/dev/null; then
    echo "installing espeak-ng and sox (apt-get)" >&2
    apt-get install -y espeak-ng sox >/dev/null || { echo "error: espeak-ng is missing and apt-get could not install it" >&2; exit 1; }
fi
HAVE_SOX=1
command -v sox >/dev/null || HAVE_SOX=0
if [[ "$NOISE" == "--noise" && $HAVE_SOX == 0 ]]; then echo "error: --noise needs sox" >&2; exit 1; fi
[[ "$COUNT" =~ ^[0-9]+$ && "$COUNT" -ge 2 ]] || { echo "error: SENTENCES '$COUNT' must be a number >= 2" >&2; exit 1; }

TRAIN_VOICES=(en-us+m1 en-us+m3 en-us+f1 en-us+f3 en+m2 en+f2 en-us+m5 en+f5)
TEST_VOICES=(en-us+m7 en-us+f4)

mkdir -p "$OUT/wav"
: > "$OUT/train.tsv"
: > "$OUT/test.tsv"

# Sentences: whole lines, 4-12 words, plain characters; every line once.
mapfile -t LINES < <(grep -E "^[A-Za-z][A-Za-z ,.'!?]+$" "$TEXT" | awk 'NF >= 4 && NF <= 12' | awk '!seen[$0]++' | head -n "$COUNT")
echo "${#LINES[@]} sentences, ${#TRAIN_VOICES[@]} training voices, ${#TEST_VOICES[@]} held-out voices -> $OUT" >&2

for i in "${!LINES[@]}"; do
    text=${LINES[$i]}
    # Every 10th sentence is a test sentence, spoken by a held-out voice.
    if (( i % 10 == 9 )); then
        voice=${TEST_VOICES[$(( (i / 10) % ${#TEST_VOICES[@]} ))]}; split=test
    else
        voice=${TRAIN_VOICES[$(( i % ${#TRAIN_VOICES[@]} ))]}; split=train
    fi
    speed=$(( 140 + (i * 37) % 51 ))   # words per minute, 140..190
    pitch=$(( 30 + (i * 53) % 41 ))    # 30..70
    name=$(printf "wav/%05d.wav" "$i")
    raw="$OUT/$name.raw.wav"
    espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$raw" "$text"
    if (( HAVE_SOX )); then
        if [[ "$NOISE" == "--noise" ]]; then
            sox -m "$raw" "|sox \"$raw\" -p synth whitenoise vol 0.01" -r 16000 -c 1 -b 16 "$OUT/$name"
        else
            sox "$raw" -r 16000 -c 1 -b 16 "$OUT/$name"
        fi
        rm -f "$raw"
    else
        mv "$raw" "$OUT/$name"
    fi
    printf "%s\t%s\t%s\n" "$name" "$voice" "$text" >> "$OUT/$split.tsv"
done
echo "train: $(wc -l < "$OUT/train.tsv") clips, test: $(wc -l < "$OUT/test.tsv") clips (voices ${TEST_VOICES[*]})" >&2
