# shellcheck shell=bash
# in_parallel N FUNC ARG...: runs `FUNC ARG` for each ARG, N at a time, in the background with
# its output kept; once all have ended, prints each one's output whole, in the order of the
# ARGs, and fails if any failed. Sourced by scripts/test.sh and scripts/fuzz.sh.
in_parallel() {
  local n="$1" f="$2" dir i=0 rc=0 a pids=()
  shift 2
  dir="$(mktemp -d)"
  for a in "$@"; do
    while (($(jobs -rp | wc -l) >= n)); do wait -n || true; done
    (
      r=0
      "$f" "$a" >"$dir/$i.log" 2>&1 || r=$?
      echo "$r" >"$dir/$i.rc"
    ) &
    pids+=($!)
    i=$((i + 1))
  done
  wait "${pids[@]}" || true
  for ((i = 0; i < $#; i++)); do
    cat "$dir/$i.log"
    [[ "$(cat "$dir/$i.rc")" == 0 ]] || rc=1
  done
  rm -rf "$dir"
  return $rc
}
