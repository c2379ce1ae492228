#!/usr/bin/env bash
# Builds and runs the whole vxswitch test suite; what CI runs (.ci/run execs this).
#
#   tools/test.sh                 everything
#   tools/test.sh --filter X      extra arguments go to `swift test`
#
# Nothing else is needed: `swift test` runs every test target, Swift Testing and XCTest alike, including the
# netns system tests (VXSystemTests), which build and tear down their own namespaces and skip with a message
# when not root. Before them, python3 -m unittest runs the tools' tests (tools/tests). Fixtures are committed.
# The benchmarks live in their own package (Benchmarks/), which this script builds but does not run. On 2 cores
# a cold build plus the suite takes minutes, far inside CI's 90.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

echo "== python3 -m unittest (tools/tests)"
# The tools' own tests: tools/bench's logic against a fake lab (no namespaces, no processes), and pktgen, the bench's
# 64-byte sender, and tapfwd, its floor, each run for real between two namespaces of its own (root only; skipped
# otherwise); a few seconds.
# A failure stops here, like a compile error below.
if ! python3 -m unittest discover -s tools/tests -v; then
    echo "tools/test.sh: FAILED (tools/tests)" >&2
    exit 1
fi

echo "== swift build --build-tests"
swift build --build-tests

echo "== swift build (Benchmarks/)"
# The benchmark package calls the dataplane's public API, and nothing else builds it: without this step an API
# change broke it unnoticed once (4afd114). Build only (about 30 s): running the benchmarks is for a quiet
# machine, by hand (docs/performance.md, "Commands").
(cd Benchmarks && swift build)

echo "== swift test"
# Building first keeps compile errors and test failures apart in the log; `swift test` then only links.
# pipefail makes the exit status swift test's, while tee keeps the full log for the summary below.
log=$(mktemp -t vx-test-XXXXXX.log)
trap 'rm -f "$log"' EXIT
status=0
swift test "$@" 2>&1 | tee "$log" || status=$?

echo "== summary"
# Swift Testing prints "Test run with N tests ... passed/failed"; XCTest prints "Executed N tests".
grep -E 'Test run with [0-9]+ tests?|Executed [0-9]+ tests?' "$log" | tail -n 4 || true
grep -E '✘' "$log" | head -n 40 || true
if [[ $status -ne 0 ]]; then
    echo "tools/test.sh: FAILED (swift test exited $status)" >&2
else
    echo "tools/test.sh: all tests passed"
fi
exit "$status"
