#!/bin/sh
# `make check-layers`: proves that the per-folder include paths enforce the
# layering.  Usage: check-layers.sh CC CFLAGS FOLDER=INCS... -- FOLDER:HEADER...
# Each FOLDER:HEADER is a forbidden include: a probe compiled with FOLDER's
# include paths that includes HEADER must fail.  Each folder's own header,
# included the same way, must compile (else the failures prove nothing).
# Sources must not include by relative path ("../worker/worker.h"), which
# would bypass the include paths.  master/main.c is compiled with worker/'s
# path, to hand the master the worker's entry point: of worker/'s headers it
# may include worker.h only (worker_internal.h and the rest would compile
# there unnoticed), so its includes are checked by name.
set -u
cd "$(dirname "$0")/.."
cc=$1 cflags=$2
shift 2
incs=""
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    incs="$incs
$1"
    shift
done
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

inc_of() {      # the include paths of folder $1
    echo "$incs" | sed -n "s/^$1=//p"
}

probe() {       # compiles "#include <header>" with folder $1's paths; 0 = compiled
    printf '#include "%s"\nint llmr_probe;\n' "$2" >"$tmp/probe.c"
    # shellcheck disable=SC2086
    $cc $cflags $(inc_of "$1") -fsyntax-only "$tmp/probe.c" >"$tmp/out" 2>&1
}

own() {         # a header of folder $1 that its own paths must reach
    case $1 in
    common) echo log.h ;; conf) echo conf.h ;; shm) echo shm.h ;;
    worker) echo worker.h ;; master) echo master.h ;;
    esac
}

for pair in "$@"; do
    folder=${pair%%:*} header=${pair#*:}
    if ! probe "$folder" "$(own "$folder")"; then
        echo "check-layers: $folder/ cannot include its own $(own "$folder"):" >&2
        cat "$tmp/out" >&2
        fails=$((fails + 1))
    elif probe "$folder" "$header"; then
        echo "check-layers: $folder/ may include $header, which its layer forbids" >&2
        fails=$((fails + 1))
    elif ! grep -q "$header.*No such file\|$header.*file not found" "$tmp/out"; then
        echo "check-layers: $folder/ including $header failed for another reason:" >&2
        cat "$tmp/out" >&2
        fails=$((fails + 1))
    else
        echo "check-layers: $folder/ cannot include $header: ok"
    fi
done
rel=$(grep -n '#[[:space:]]*include[[:space:]]*"[^"]*/' common/*.[ch] conf/*.[ch] shm/*.[ch] \
      worker/*.[ch] master/*.[ch] 2>/dev/null)
if [ -n "$rel" ]; then
    echo "check-layers: includes by path bypass the layering:" >&2
    echo "$rel" >&2
    fails=$((fails + 1))
fi
main_worker=""
for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]\([^">]*\)[">].*/\1/p' \
           master/main.c); do
    [ "$h" != worker.h ] && [ -f "worker/$h" ] && main_worker="$main_worker $h"
done
if [ -n "$main_worker" ]; then
    echo "check-layers: master/main.c may include worker.h only of worker/'s headers;" \
         "it includes:$main_worker" >&2
    fails=$((fails + 1))
else
    echo "check-layers: master/main.c includes nothing of worker/ but worker.h: ok"
fi
[ "$fails" -eq 0 ] && echo "check-layers: ok" && exit 0
exit 1
