#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20) and fails on any crash.
#   fuzz/run.sh          # CI: 9 targets x 20 s plus one build, ~4 min on 2 cores
#   fuzz/run.sh 600      # the long local run for the figures
# Needs nightly and cargo-fuzz; installs cargo-fuzz when missing and skips
# (exit 0, loudly) without nightly. Seeds come from fuzz/seeds/<target>/
# (spec vectors, captures, read only); new corpus entries go to
# fuzz/corpus/<target>/ and crashes to fuzz/artifacts/<target>/ (both ignored
# by git). Logs: $FUZZ_LOG_DIR (default: a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-20}"
case "$SECONDS_EACH" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "WARNING: ********************************************************" >&2
    echo "WARNING: no nightly toolchain: fuzz run SKIPPED (rustup toolchain install nightly)" >&2
    echo "WARNING: ********************************************************" >&2
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz missing: installing it" >&2
    cargo install cargo-fuzz --locked
fi

log_dir="${FUZZ_LOG_DIR:-$(mktemp -d -t dmc-fuzz.XXXXXX)}"
mkdir -p "$log_dir"

# One build of every target (sanitizer + coverage instrumentation); the runs
# below then start at once.
if ! cargo +nightly fuzz build > "$log_dir/build.log" 2>&1; then
    echo "FUZZ BUILD FAILED; log: $log_dir/build.log" >&2
    tail -40 "$log_dir/build.log" >&2
    exit 1
fi

targets=$(cargo +nightly fuzz list)
status=0
summary=""
for t in $targets; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    log="$log_dir/$t.log"
    echo "--- fuzz $t for ${SECONDS_EACH}s"
    # The first corpus directory receives new inputs; seeds stay untouched.
    if cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
            -max_total_time="$SECONDS_EACH" -print_final_stats=1 > "$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
        line="$t: ok, ${execs:-?} execs, ${cov:-no coverage line}"
    else
        echo "FUZZ CRASH in $t; log: $log; artifacts: fuzz/artifacts/$t" >&2
        grep -E "panicked at|ERROR: |SUMMARY" -A2 "$log" | head -20 >&2 || true
        tail -20 "$log" >&2
        line="$t: CRASH (see $log)"
        status=1
    fi
    echo "$line"
    summary+="$line"$'\n'
done
echo "=== fuzz summary (${SECONDS_EACH}s per target; logs in $log_dir)"
printf '%s' "$summary"
exit $status
