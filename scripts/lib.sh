# Sourced by the *_results.sh scripts; needs $out (the tracked folder of results).
# run NAME CMD...: CMD's JSON stdout into $out/NAME.json and the command line into NAME.cmd,
# unless NAME.json exists (so a script cut short resumes). The JSON goes through a temp file
# renamed into place: a killed command leaves no half-written result.
run() {
    local name="$1"
    shift
    if [ -s "$out/$name.json" ]; then return; fi
    echo "running: $*" >&2
    "$@" >"$out/$name.json.tmp"
    mv "$out/$name.json.tmp" "$out/$name.json"
    printf '%s\n' "$*" >"$out/$name.cmd"
}
