# What the side-by-side CPU benchmarks (bench/*_vs_torch.sh) share; `source` it from a script that has cd'd to the
# repository root. A benchmark runs each runner (ours, the PyTorch peer, ...) for each case and thread count, in
# ROUNDS interleaved rounds with the runners' order rotated every round (two runners: it flips), so a change in the
# machine's load falls on both sides; each run's own figure is the median of its timed iterations, the table gives
# each runner's median over the rounds (bench/bench_table.py), and every run's 1-minute load average is recorded.
# Threads: 1 = the runner under `taskset -c 0` with one thread; 2 = two threads, no pinning. PyTorch runs with
# OMP_WAIT_POLICY=PASSIVE: its OpenMP workers sleep instead of spinning while they wait (on a machine shared with
# other work, spinning steals the cores it waits for).
#
#   bench_need_torch                    exit with a hint unless /usr/bin/python3 imports torch and libblas.so.3 is an optimized BLAS
#   bench_build                         dotnet build -c Release bench/ManagedTensor.Bench.csproj, quietly
#   bench_pin THREADS                   sets PIN=(taskset -c 0) for one thread, PIN=() otherwise
#   bench_order ROUND RUNNER...         prints the runners rotated by ROUND - 1
#   bench_run RAW "TAGS" "FIELDS" CMD... runs CMD, takes FIELDS (key=value) from its last stdout line and appends
#                                       "TAGS FIELD=... load1=L" to RAW (and prints it)
#   bench_command SCRIPT VAR...         the command that repeats this run: each VAR that is set, then bash SCRIPT
# OURS is our runner's command line, TORCH_ENV the environment the PyTorch peers run in.

OURS=(dotnet bench/bin/Release/net10.0/ManagedTensor.Bench.dll)
TORCH_ENV=(env OMP_WAIT_POLICY=PASSIVE)

bench_need_torch() {
    /usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "the PyTorch peers need /usr/bin/python3 with torch (Debian: python3-torch)" >&2; exit 1; }
    # Debian's torch is built against the generic libblas.so.3 ("BLAS_INFO=generic"): which library that is depends on
    # the alternatives. python3-torch alone pulls in the reference BLAS, with which PyTorch's convolutions (im2col +
    # GEMM) run about 4x slower (YOLOv8n's training step: 2.5 s of CPU against 0.62 s with OpenBLAS), so every ratio
    # against it would be meaningless.
    local blas
    blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
    case $blas in
        *openblas*|*mkl*|*blis*) ;;
        *) echo "libblas.so.3 is ${blas:-missing}, not an optimized BLAS: install libopenblas0 (apt-get install libopenblas0) before comparing with PyTorch" >&2; exit 1 ;;
    esac
}

bench_build() {
    dotnet build -c Release bench/ManagedTensor.Bench.csproj -v q -nologo >/dev/null
}

bench_pin() {
    PIN=()
    if [ "$1" = 1 ]; then PIN=(taskset -c 0); fi
}

bench_order() {
    local round=$1 i n
    shift
    n=$#
    local list=("$@")
    for ((i = 0; i < n; i++)); do echo "${list[$(((i + round - 1) % n))]}"; done
}

bench_field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }

bench_run() {
    local raw=$1 tags=$2 fields=$3 load line rec f
    shift 3
    load=$(cut -d' ' -f1 /proc/loadavg)
    line=$("$@" | tail -1)
    rec=$tags
    for f in $fields; do rec+=" $f=$(echo "$line" | bench_field "$f")"; done
    echo "$rec load1=$load" | tee -a "$raw"
}

bench_command() {
    local script=$1 cmd="" v
    shift
    for v in "$@"; do
        if [ -z "${!v+x}" ]; then continue; fi
        if [[ ${!v} == *" "* ]]; then cmd+="$v=\"${!v}\" "; else cmd+="$v=${!v} "; fi
    done
    echo "${cmd}bash $script"
}
