#!/usr/bin/env bash
# A synthetic speech corpus for `mt transcribe train`: sentences spoken by Debian's espeak-ng in several voices, speeds
# and pitches, written as 16 kHz mono 16-bit WAV files with a manifest per split.
#
#   bash scripts/make_speech_corpus.sh [OUT_DIR] [SENTENCES] [--text generated|shakespeare] [--seed N] [--noise]
#
#   OUT_DIR     default data-speech (not committed); gets wav/NNNNN.wav, train.tsv, test.tsv
#   SENTENCES   default 6000 (about 10 minutes on a quiet 2-core machine)
#   --text      generated (default): sentences of a small grammar (commands, names, numbers, colours, objects,
#               places, days; about 200 words with plurals) in eight templates, 5 to 8 words, 1.5 to 3.7 s of speech (`mt transcribe
#               train`'s default --audio-seconds 4 holds them). shakespeare: lines of data/tinyshakespeare.txt with 4 to
#               12 words (letters and . , ' ! ? only): an open vocabulary that 2,000 clips do not cover (most test lines
#               have words no training line has); up to 6 s of speech (train with --audio-seconds 8).
#   --seed      seed of the generated sentences (default 1; the Shakespeare lines are always the file's first ones)
#   --noise     mix white noise at about -40 dB into every clip (needs sox)
#   --print     print "split<TAB>sentence" lines instead of writing OUT_DIR (nothing is spoken; needs no espeak-ng)
#
# Each manifest line is "wav/NNNNN.wav<TAB>voice<TAB>transcript". The test split holds out voices, not only
# sentences: clips spoken by the two held-out voices (en-us+m7, en-us+f4) go to test.tsv and no sentence of test.tsv
# is in train.tsv (every sentence is spoken once), so a test WER measures speakers the model never heard saying
# sentences it never saw. With --text generated the test sentences are new combinations of words the training
# sentences use (the script checks that every test word occurs in train.tsv): the test measures reading new voices and
# new word sequences, not spelling new words. Everything is deterministic (the sentences follow from the seed; voice,
# speed and pitch from the sentence number; sox runs with -R, so its dither and noise repeat too). espeak-ng (and sox,
# for 16 kHz and noise) are installed with apt-get when missing; without sox the clips stay at espeak-ng's 22,050 Hz,
# which `mt transcribe` resamples when reading.
set -euo pipefail

POSITIONAL=()
MODE=generated
SEED=1
NOISE=0
PRINT=0
while (( $# )); do
    case "$1" in
        --text) MODE=${2:-}; shift 2 || { echo "error: --text needs generated or shakespeare" >&2; exit 1; } ;;
        --seed) SEED=${2:-}; shift 2 || { echo "error: --seed needs a number" >&2; exit 1; } ;;
        --noise) NOISE=1; shift ;;
        --print) PRINT=1; shift ;;
        --*) echo "error: unknown option '$1' (--text generated|shakespeare, --seed N, --noise, --print)" >&2; exit 1 ;;
        *) POSITIONAL+=("$1"); shift ;;
    esac
done
OUT=${POSITIONAL[0]:-data-speech}
COUNT=${POSITIONAL[1]:-6000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TEXT="$REPO/data/tinyshakespeare.txt"

[[ "$COUNT" =~ ^[0-9]+$ && "$COUNT" -ge 10 ]] || { echo "error: SENTENCES '$COUNT' must be a number >= 10" >&2; exit 1; }
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "error: --seed '$SEED' must be a non-negative number" >&2; exit 1; }
[[ "$MODE" == generated || "$MODE" == shakespeare ]] || { echo "error: --text '$MODE' must be generated or shakespeare" >&2; exit 1; }

TRAIN_VOICES=(en-us+m1 en-us+m3 en-us+f1 en-us+f3 en+m2 en+f2 en-us+m5 en+f5)
TEST_VOICES=(en-us+m7 en-us+f4)

# The grammar's words. Every list is small enough that thousands of training sentences use every word many times.
VERB=(take move put bring open close find show give lift drop push pull paint clean hide check count hold throw carry wash)
PAST=(took moved found painted cleaned dropped carried washed sold bought lost counted)
ADJ=(big small old new clean dirty heavy light long short round flat)
COLOUR=(red blue green yellow black white orange purple pink brown grey silver gold)
THING=(ball cup lamp chair table book door window phone key bottle card clock hat shoe bag coin pen plate spoon car boat bird cake)
PREP=(on under near behind beside above below inside)
PLACE=(kitchen garden office hall bedroom garage station market school park library bridge)
NAME=(alice bob carol david emma frank grace henry iris jack kate leo mary nina oscar paul rose sam tom vera)
NUMBER=(one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen
        eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred)
DEVICE=(heater radio fan light timer alarm oven speaker)
UNIT=(degrees percent minutes seconds points)
DAY=(monday tuesday wednesday thursday friday saturday sunday)

# A 31-bit linear congruential generator (glibc's constants): the same sentences from the same seed on every machine,
# unlike $RANDOM or awk's rand(). pick NAME sets W to a random element of the array NAME.
STATE=$(( (SEED * 2654435761 + 1) % 2147483648 ))
next() { STATE=$(( (STATE * 1103515245 + 12345) % 2147483648 )); R=$(( STATE >> 8 )); }
pick() { local -n list=$1; next; W=${list[$(( R % ${#list[@]} ))]}; }

# One sentence of one of eight templates, 4 to 8 words.
sentence() {
    next
    local t=$(( R % 8 )) a b c d e f
    case $t in
        0) pick VERB; a=$W; pick ADJ; b=$W; pick COLOUR; c=$W; pick THING; d=$W; pick PREP; e=$W; pick PLACE
           S="$a the $b $c $d $e the $W" ;;
        1) pick NAME; a=$W; pick NUMBER; b=$W; pick COLOUR; c=$W; pick THING; S="$a has $b $c ${W}s" ;;
        2) pick NAME; a=$W; pick PAST; b=$W; pick COLOUR; c=$W; pick THING; d=$W; pick DAY; S="$a $b the $c $d on $W" ;;
        3) pick DEVICE; a=$W; pick NUMBER; b=$W; pick UNIT; S="set the $a to $b $W" ;;
        4) pick NAME; a=$W; pick DAY; b=$W; NUM12=("${NUMBER[@]:0:12}"); pick NUM12; S="call $a on $b at $W" ;;
        5) pick VERB; a=$W; pick NUMBER; b=$W; pick THING; c=$W; pick PLACE; S="$a $b ${c}s from the $W" ;;
        6) pick THING; a=$W; pick PREP; b=$W; pick PLACE; c=$W; pick COLOUR; S="the $a $b the $c is $W" ;;
        7) pick NAME; a=$W; pick NAME; b=$W; pick PAST; c=$W; pick NUMBER; d=$W; pick THING; S="$a and $b $c $d ${W}s" ;;
    esac
}

LINES=()
if [[ $MODE == generated ]]; then
    declare -A SEEN=()
    while (( ${#LINES[@]} < COUNT )); do
        sentence
        [[ -n ${SEEN[$S]:-} ]] && continue      # every sentence once, so no test sentence is a training sentence
        SEEN[$S]=1
        LINES+=("$S")
    done
else
    # Whole lines, 4-12 words, plain characters; every line once.
    mapfile -t LINES < <(grep -E "^[A-Za-z][A-Za-z ,.'!?]+$" "$TEXT" | awk 'NF >= 4 && NF <= 12' | awk '!seen[$0]++' | head -n "$COUNT")
fi

# Every 10th sentence is a test sentence, spoken by a held-out voice.
split_of() { if (( $1 % 10 == 9 )); then SPLIT=test; else SPLIT=train; fi; }
if (( PRINT )); then
    for i in "${!LINES[@]}"; do split_of "$i"; printf "%s\t%s\n" "$SPLIT" "${LINES[$i]}"; done
    exit 0
fi

if ! command -v espeak-ng >/dev/null; then
    echo "installing espeak-ng and sox (apt-get)" >&2
    apt-get install -y espeak-ng sox >/dev/null || { echo "error: espeak-ng is missing and apt-get could not install it" >&2; exit 1; }
fi
HAVE_SOX=1
command -v sox >/dev/null || HAVE_SOX=0
if (( NOISE && !HAVE_SOX )); then echo "error: --noise needs sox" >&2; exit 1; fi

mkdir -p "$OUT/wav"
: > "$OUT/train.tsv"
: > "$OUT/test.tsv"
echo "${#LINES[@]} $MODE sentences, ${#TRAIN_VOICES[@]} training voices, ${#TEST_VOICES[@]} held-out voices -> $OUT" >&2

for i in "${!LINES[@]}"; do
    text=${LINES[$i]}
    split_of "$i"
    if [[ $SPLIT == test ]]; then
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
        if (( NOISE )); then
            sox -R -m "$raw" "|sox -R \"$raw\" -p synth whitenoise vol 0.01" -r 16000 -c 1 -b 16 "$OUT/$name"
        else
            sox -R "$raw" -r 16000 -c 1 -b 16 "$OUT/$name"
        fi
        rm -f "$raw"
    else
        mv "$raw" "$OUT/$name"
    fi
    printf "%s\t%s\t%s\n" "$name" "$voice" "$text" >> "$OUT/$split.tsv"
done
echo "train: $(wc -l < "$OUT/train.tsv") clips, test: $(wc -l < "$OUT/test.tsv") clips (voices ${TEST_VOICES[*]})" >&2
# The longest clip: `mt transcribe train --audio-seconds` must be at least this (16-bit mono: 32,000 bytes a second).
longest=$(cut -f1 "$OUT/train.tsv" "$OUT/test.tsv" | sed "s|^|$OUT/|" | xargs stat -c %s | sort -n | tail -1)
echo "longest clip: $(awk -v b="$longest" 'BEGIN { printf "%.2f", (b - 44) / (2 * 16000) }') s" >&2

# Words of test sentences that no training sentence has: none in the generated mode (it would be an error there).
unseen=$(comm -13 <(cut -f3 "$OUT/train.tsv" | tr -s ' ' '\n' | sort -u) <(cut -f3 "$OUT/test.tsv" | tr -s ' ' '\n' | sort -u) | wc -l)
echo "test words not in train.tsv: $unseen" >&2
if [[ $MODE == generated && $unseen -gt 0 ]]; then echo "error: $unseen test words never occur in training; make more sentences" >&2; exit 1; fi
