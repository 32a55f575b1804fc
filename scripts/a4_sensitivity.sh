#!/usr/bin/env bash
# How much does the WikiText-2 subset PPL move when a training step changes almost nothing? From
# the Hadamard-rotated RTN model, one `zqat train` step at weight lr 1e-9 (every element moves
# by at most 2e-8 |z|: the gradient clip is 0.2/eps with eps 1e-2), LWC and LET frozen; the packed
# models before and after the step (--snapshot-every 1) are compared byte by byte and both are
# evaluated on the first 8 test windows of 2048 tokens. W4A4 against W4A16, to test the guess
# that with 4-bit activations a changed weight code shifts a few activations across a rounding
# threshold and each such flip, a whole activation step, spreads through the later layers.
# Then, one at a time, each of the first SINGLE [6] changed bytes is applied alone to the model
# before the step (the rest of the file as it was) and that file is evaluated too: what one or
# two 4-bit codes do to the PPL.
# Writes docs/data/train/a4-sensitivity.json. Usage: scripts/a4_sensitivity.sh [threads]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
if [ -z "${ZQAT_BIN:-}" ]; then bash scripts/build.sh release zqat >/dev/null; fi
zqat="${ZQAT_BIN:-./build/release/zqat}"
model="$(bash scripts/fetch_model.sh)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
single="${SINGLE:-6}"
# patch BASE CMP_LINE OUT: BASE with the one byte of a `cmp -l` line changed, written to OUT;
# prints the JSON of that change (the tensor holding it, from the GGUF tensor table).
patch() {
    python3 - "$@" <<'PY'
import json, struct, sys
base, line, out = sys.argv[1:]
off, old, new = line.split()
off, old, new = int(off) - 1, int(old, 8), int(new, 8)
b = bytearray(open(base, "rb").read())
o = 8  # GGUF header: magic, version; then tensor count, kv count
def take(fmt):
    global o
    v = struct.unpack_from("<" + fmt, b, o); o += struct.calcsize(fmt); return v[0]
def string():
    global o
    n = take("Q"); v = b[o:o + n].decode(); o += n; return v
SIZE = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def value(t):
    if t == 8: return string()
    if t == 9:
        et, n = take("I"), take("Q"); return [value(et) for _ in range(n)]
    return take(SIZE[t])
n_t, n_kv = take("Q"), take("Q")
align = 32
for _ in range(n_kv):
    k, v = string(), value(take("I"))
    if k == "general.alignment": align = v
tensors = []
for _ in range(n_t):
    name = string(); dims = [take("Q") for _ in range(take("I"))]; take("I")
    tensors.append((take("Q"), name))
data = (o + align - 1) // align * align
name = max((t for t in tensors if data + t[0] <= off), key=lambda t: t[0])[1]
b[off] = new
open(out, "wb").write(b)
codes = sum((old >> s & 15) != (new >> s & 15) for s in (0, 4))
print(json.dumps({"offset": off, "tensor": name, "codes_changed": codes}))
PY
}
ppl_of() {  # ppl_of MODEL: its PPL on the first 8 test windows of 2048
    "$zqat" eval-ppl --model "$1" --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 2048 \
        --limit-windows 8 --threads "$threads" --json --quiet |
        python3 -c "import json, sys; print(json.load(sys.stdin)['ppl'])"
}
rows=()
for spec in W4A4 W4A16; do
    rm -rf "$tmp/r"
    "$zqat" train --model "$model" --qspec "$spec" --init rtn --rotate --no-clip --no-smooth \
        --steps 1 --bsz 1 --ctx 256 --lr 1e-9 --lr-clip 0 --lr-smooth 0 --eps 1e-2 \
        --eval-every 1 --eval-windows 8 --eval-ctx 2048 --final-eval none --snapshot-every 1 \
        --seed 0 --run-dir "$tmp/r" --threads "$threads" --quiet >/dev/null
    changed=$(cmp -l "$tmp/r/model-0.gguf" "$tmp/r/model-1.gguf" | wc -l || true)
    bytes=$(stat -c %s "$tmp/r/model-0.gguf")
    ppl=$(python3 -c "
import json
print(json.dumps([j['eval_ppl'] for j in map(json.loads, open('$tmp/r/metrics.jsonl')) if 'eval_ppl' in j]))")
    one=()
    while IFS= read -r line; do
        j=$(patch "$tmp/r/model-0.gguf" "$line" "$tmp/one.gguf")
        p=$(ppl_of "$tmp/one.gguf")
        one+=("${j%\}}, \"ppl\": $p}")
        echo "a4_sensitivity: $spec: only $j: PPL $p" >&2
    done < <(cmp -l "$tmp/r/model-0.gguf" "$tmp/r/model-1.gguf" | head -n "$single" || true)
    rows+=("{\"qspec\": \"$spec\", \"bytes\": $bytes, \"changed_bytes\": $changed, \"ppl\": $ppl, \"single\": [$(IFS=,; echo "${one[*]}")]}")
    echo "a4_sensitivity: $spec: $changed of $bytes bytes changed, PPL $ppl" >&2
done
mkdir -p docs/data/train
{
    printf '{"cpu": "%s", "threads": %s, "rows": [\n' \
        "$(lscpu | sed -n 's/^Model name: *//p')" "$threads"
    (IFS=$',\n'; printf '%s\n' "${rows[*]}")
    printf ']}\n'
} >docs/data/train/a4-sensitivity.json.tmp
mv docs/data/train/a4-sensitivity.json.tmp docs/data/train/a4-sensitivity.json
python3 scripts/render_train_results.py docs/data/train
