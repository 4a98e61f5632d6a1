# The KTM-* marker lines of a test run, spelled once (POSIX sh). The guest's /init (busybox sh,
# from /lib/ktm/markers.sh) and run-host.sh (bash) source this file and print every marker
# through these functions; summarize.py parses them (its BEGIN, END, ... patterns), and
# test_summarize.py prints each marker with these functions and checks that summarize.py
# reads it back. README.md lists what each one means.
# KTM-MATRIX lines are the tests' own (tests/common: `KTM-MATRIX<TAB>row<TAB>cell`).
ktm_env() { echo "KTM-ENV $1"; }                     # NAME=VALUE, an exported pass-through variable
ktm_boot() { echo "KTM-BOOT $(uname -r) label=$1"; } # LABEL: about to run the tests
ktm_mem() { # memory when the tests start
  echo "KTM-MEM $(awk '/^MemTotal:|^MemAvailable:/ {printf "%s%s kB ", $1, $2}' /proc/meminfo)"
}
ktm_begin() { echo "KTM-BEGIN $1"; }       # NAME: a test binary starts
ktm_end() { echo "KTM-END $1 rc=$2"; }     # NAME RC: it ended with exit status RC
ktm_timeout() { echo "KTM-TIMEOUT $1"; }   # NAME: the host run's deadline killed it
ktm_done() { echo "KTM-DONE"; }            # every binary ran
ktm_fatal() { echo "KTM-FATAL $*"; }       # the run could not be set up
ktm_warn() { echo "KTM-WARN $*"; }         # something optional failed
