#!/usr/bin/env bash
# End-to-end checks of the zqat binary. Usage: cli_test.sh path/to/zqat
# Bad input must exit non-zero with a message naming the file; with ZQAT_MODEL set, a bounded
# real-model tier runs perplexity and greedy generation.
set -uo pipefail
zqat="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
ko() { echo "FAIL: $1"; fail=$((fail + 1)); }

# expect_fail NAME PATTERN CMD...: non-zero exit and stderr matching PATTERN
expect_fail() {
    local name="$1" pattern="$2"
    shift 2
    if "$@" >"$tmp/out" 2>"$tmp/err"; then
        ko "$name: exited 0"
    elif ! grep -Eq -- "$pattern" "$tmp/err"; then
        ko "$name: stderr lacks /$pattern/: $(head -c 300 "$tmp/err")"
    else
        ok "$name"
    fi
}

# same_predictions A B: two --predictions files (finetune's test_predictions.jsonl, eval-task's)
# give every example the same gold, answer and option log-likelihoods (to float rounding)
same_predictions() {
    python3 - "$1" "$2" <<'PY'
import json, sys
a, b = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b) > 0, (len(a), len(b))
for x, y in zip(a, b):
    assert (x["doc"], x["gold"], x["pred_tok"]) == (y["doc"], y["gold"], y["pred_tok"]), (x, y)
    assert len(x["ll"]) == len(y["ll"]) and all(abs(u - v) <= 1e-4 * max(1, abs(v))
                                                for u, v in zip(x["ll"], y["ll"])), (x, y)
PY
}

for sub in "" inspect eval-ppl eval-task generate quantize train finetune plot; do
    if "$zqat" $sub --help >"$tmp/out" 2>&1 && grep -q -- "--help" "$tmp/out"; then
        ok "help ${sub:-top}"
    else
        ko "help ${sub:-top}"
    fi
done
expect_fail "no subcommand" "subcommand" "$zqat"
expect_fail "unknown flag" "--bogus" "$zqat" inspect some.gguf --bogus
expect_fail "missing model" "nope\.gguf" "$zqat" inspect "$tmp/nope.gguf"
printf 'not a gguf file at all' >"$tmp/bad.gguf"
expect_fail "bad magic" "\[gguf\].*bad\.gguf" "$zqat" inspect "$tmp/bad.gguf"
expect_fail "eval-task unknown task" "unknown --task 'mmlu'.*piqa" "$zqat" eval-task \
    --model "$tmp/bad.gguf" --task mmlu
expect_fail "train without run dir" "run-dir" "$zqat" train --model "$tmp/bad.gguf"
expect_fail "resume a missing run" "nope/config\.json" "$zqat" train --resume "$tmp/nope"
expect_fail "plot a missing run" "nope/metrics\.jsonl" "$zqat" plot "$tmp/nope"
mkdir -p "$tmp/badrun" && printf '{"model": 3}' >"$tmp/badrun/config.json"
expect_fail "resume a bad config" "config\.json.*'model'" "$zqat" train --resume "$tmp/badrun"

if [ -n "${ZQAT_MODEL:-}" ] && [ -f "$ZQAT_MODEL" ]; then
    head -c 100000 "$ZQAT_MODEL" >"$tmp/trunc.gguf"
    expect_fail "truncated model" "\[gguf\].*trunc\.gguf" "$zqat" inspect "$tmp/trunc.gguf"
    expect_fail "missing text" "no_such_text" "$zqat" eval-ppl --model "$ZQAT_MODEL" \
        --text "$tmp/no_such_text.txt" --quiet
    printf 'too short\n' >"$tmp/short.txt"
    expect_fail "text shorter than ctx" "fewer than one window" "$zqat" eval-ppl \
        --model "$ZQAT_MODEL" --text "$tmp/short.txt" --ctx 512 --quiet

    if "$zqat" inspect "$ZQAT_MODEL" >"$tmp/inspect" 2>&1 && grep -q "576" "$tmp/inspect"; then
        ok "inspect real model"
    else
        ko "inspect real model: $(head -c 300 "$tmp/inspect")"
    fi

    wiki="$(dirname "$0")/../../shared/data/wikitext-2-raw/wiki.test.raw"
    if [ -f "$wiki" ]; then
        if "$zqat" eval-ppl --model "$ZQAT_MODEL" --text "$wiki" --ctx 256 --limit-windows 2 \
            --json --quiet >"$tmp/ppl.json" 2>"$tmp/err"; then
            if python3 - "$tmp/ppl.json" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for k in ("ppl", "nll", "tokens", "windows", "seconds"):
    assert k in j, k
assert j["windows"] == 2 and j["tokens"] == 2 * 255, j
assert 3.0 < j["ppl"] < 200.0, j  # a working 135M model lands near 20-30 here; broken ones don't
PY
            then ok "eval-ppl json ($(cat "$tmp/ppl.json" | head -c 120))"; else ko "eval-ppl json: $(cat "$tmp/ppl.json")"; fi
        else
            ko "eval-ppl ran: $(head -c 300 "$tmp/err")"
        fi
    fi
    # quantize: bad input fails before any work and leaves no output behind.
    data="$(dirname "$0")/../../shared/data"
    q="$tmp/q.gguf"
    expect_fail "quantize unknown method" "unknown method 'awq'" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method awq --out "$q" --quiet
    expect_fail "quantize bad qspec" "qspec.*W5A4" "$zqat" quantize --model "$ZQAT_MODEL" \
        --qspec W5A4 --out "$q" --quiet
    expect_fail "quantize group does not divide" "g128|128" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A16g128 --out "$q" --quiet
    expect_fail "quantize gptq with A4" "weight-only" "$zqat" quantize --model "$ZQAT_MODEL" \
        --qspec W4A4 --method gptq --out "$q" --quiet
    expect_fail "quantize missing calibration data" "$tmp/nodata" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method smoothquant --data-dir "$tmp/nodata" \
        --out "$q" --quiet
    expect_fail "quantize calibration too short" "too short" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method smoothquant --ctx 500000 --nsamples 2 \
        --data-dir "$data" --out "$q" --quiet
    expect_fail "quantize skip-first without gptq" "gptq-skip-first.*gptq" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A16 --method rtn --gptq-skip-first 1 --out "$q"
    expect_fail "quantize skip-first past ctx" "gptq-skip-first 64.*ctx 64" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A16 --method gptq --ctx 64 --gptq-skip-first 64 --out "$q"
    expect_fail "quantize rotate with smoothquant" "rotate.*smoothquant" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method smoothquant --rotate --ctx 64 --nsamples 2 \
        --data-dir "$data" --out "$q" --quiet
    expect_fail "quantize act-clip with rtn" "act-clip.*init" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method rtn --act-clip --out "$q" --quiet
    expect_fail "quantize act-clip at A16" "act-clip.*W4A16" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A16 --method init --act-clip --out "$q" --quiet
    if [ -e "$q" ] || ls "$tmp" | grep -q '^q\.gguf'; then ko "failed quantize left $(ls "$tmp")"; else ok "no output after failures"; fi
    # A W8A8 RTN model is close to FP: it still knows the capital of France, and eval-ppl and
    # generate read the packed file.
    if "$zqat" quantize --model "$ZQAT_MODEL" --qspec W8A8 --method rtn --out "$q" --json \
        --quiet >"$tmp/q.json" 2>"$tmp/err" && [ -s "$q" ]; then
        ok "quantize W8A8 rtn"
        if "$zqat" generate --model "$q" --prompt "The capital of France is" -n 8 --quiet \
            >"$tmp/gen" 2>"$tmp/err" && grep -q "Paris" "$tmp/gen"; then
            ok "W8A8 model says Paris"
        else
            ko "W8A8 generate: $(head -c 300 "$tmp/gen") $(head -c 300 "$tmp/err")"
        fi
        if [ -f "$wiki" ] && "$zqat" eval-ppl --model "$q" --text "$wiki" --ctx 256 \
            --limit-windows 2 --json --quiet >"$tmp/qppl.json" 2>"$tmp/err" &&
            python3 - "$tmp/ppl.json" "$tmp/qppl.json" <<'PY'
import json, sys
fp, q = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
assert q["qspec"] == "W8A8" and q["quant_method"] == "rtn", q
assert abs(q["ppl"] / fp["ppl"] - 1) < 0.05, (fp["ppl"], q["ppl"])  # W8A8 costs little
assert q["peak_rss_mib"] < fp["peak_rss_mib"], (fp["peak_rss_mib"], q["peak_rss_mib"])
PY
        then ok "eval-ppl on the packed file"; else ko "eval-ppl packed: $(cat "$tmp/qppl.json") $(head -c 300 "$tmp/err")"; fi
    else
        ko "quantize W8A8: $(head -c 300 "$tmp/err")"
    fi

    # The Hadamard-rotated W6A6 file: the rotation is recorded and read back, and its PPL is
    # near FP (a reader that forgot to rotate the inputs would be far off).
    qr="$tmp/qrot.gguf"
    if [ -f "$wiki" ] && "$zqat" quantize --model "$ZQAT_MODEL" --qspec W6A6 --method rtn --rotate \
        --out "$qr" --quiet 2>"$tmp/err" && "$zqat" eval-ppl --model "$qr" --text "$wiki" \
        --ctx 256 --limit-windows 2 --json --quiet >"$tmp/rppl.json" 2>>"$tmp/err" &&
        python3 - "$tmp/ppl.json" "$tmp/rppl.json" <<'PY'
import json, sys
fp, q = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
assert q["rotation"] == "hadamard", q
assert abs(q["ppl"] / fp["ppl"] - 1) < 0.15, (fp["ppl"], q["ppl"])
PY
    then ok "rotated W6A6 file"; else ko "rotated W6A6: $(cat "$tmp/rppl.json" 2>/dev/null) $(head -c 300 "$tmp/err")"; fi
    rm -f "$qr"

    # eval-task: a missing task file is named; ARC-Easy on 40 questions is well above chance
    # (0.25) for the FP model; the packed W8A8 file and its fake-quant unpacking score alike.
    expect_fail "eval-task missing data" "$tmp/nodata/tasks/arc/arc_easy_test_icl.jsonl" \
        "$zqat" eval-task --model "$ZQAT_MODEL" --task arc_easy --data-dir "$tmp/nodata" --quiet
    et=(--task arc_easy --limit 40 --data-dir "$data" --threads 2 --json --quiet)
    if "$zqat" eval-task --model "$ZQAT_MODEL" "${et[@]}" >"$tmp/et_fp.json" 2>"$tmp/err" &&
        "$zqat" eval-task --model "$q" "${et[@]}" --predictions "$tmp/pred.jsonl" \
            >"$tmp/et_q.json" 2>>"$tmp/err" &&
        "$zqat" eval-task --model "$q" "${et[@]}" --fake-quant >"$tmp/et_fq.json" 2>>"$tmp/err" &&
        python3 - "$tmp/et_fp.json" "$tmp/et_q.json" "$tmp/et_fq.json" "$tmp/pred.jsonl" <<'PY'
import json, sys
fp, q, fq = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:4])
assert fp["n"] == 40 and fp["acc"] >= 0.35, fp
assert abs(q["acc"] - fp["acc"]) <= 0.1, (fp["acc"], q["acc"])
assert abs(q["acc_norm"] - fq["acc_norm"]) <= 0.05 and abs(q["acc"] - fq["acc"]) <= 0.05, (q, fq)
preds = [json.loads(l) for l in open(sys.argv[4])]
assert len(preds) == 40 and all(len(p["ll"]) == 4 for p in preds), preds[:2]
assert sum(p["pred"] == p["gold"] for p in preds) == round(q["acc"] * 40), q
PY
    then ok "eval-task arc_easy: FP, packed, fake-quant"; else ko "eval-task: $(cat "$tmp"/et_*.json) $(head -c 300 "$tmp/err")"; fi
    if "$zqat" eval-task --model "$ZQAT_MODEL" --task squad --limit 2 --max-new 8 --data-dir "$data" \
        --threads 2 --json --quiet >"$tmp/sq.json" 2>"$tmp/err" &&
        python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["n"]==2 and 0<=j["f1"]<=1, j' "$tmp/sq.json"
    then ok "eval-task squad (greedy, F1)"; else ko "eval-task squad: $(cat "$tmp/sq.json") $(head -c 300 "$tmp/err")"; fi

    # finetune: bad flags fail before any work; a short lightweight run logs the same with 1
    # and 2 threads, its frozen linears leave it bit-identical to RTN's packed ones (the W8A8
    # file above), and its test accuracy is what eval-task --split test gives its model.gguf.
    expect_fail "finetune bad variant" "unknown --variant 'lora'" "$zqat" finetune \
        --model "$ZQAT_MODEL" --variant lora --run-dir "$tmp/f0" --quiet
    expect_fail "finetune unknown task" "unknown --task 'mmlu'.*squad, drop; alpaca" "$zqat" \
        finetune --model "$ZQAT_MODEL" --task mmlu --run-dir "$tmp/f0" --quiet
    fargs=(--model "$ZQAT_MODEL" --task sst2 --variant lightweight --qspec W8A8 --init rtn
        --steps 3 --bsz 2 --n-val 8 --n-test 12 --eval-every 2 --lr 1e-4 --data-dir "$data"
        --json --quiet)
    if "$zqat" finetune "${fargs[@]}" --threads 1 --run-dir "$tmp/f1" >"$tmp/f1.json" 2>"$tmp/err" &&
        "$zqat" finetune "${fargs[@]}" --threads 2 --run-dir "$tmp/f2" >"$tmp/f2.json" 2>>"$tmp/err" &&
        "$zqat" eval-task --model "$tmp/f2/model.gguf" --task sst2 --split test --n-test 12 \
            --data-dir "$data" --json --quiet --predictions "$tmp/f2_pred.jsonl" \
            >"$tmp/f2_test.json" 2>>"$tmp/err" &&
        python3 - "$tmp/f1" "$tmp/f2" "$tmp/f2_test.json" "$q" <<'PY'
import json, struct, sys
def tensors(path):  # GGUF v3: name -> the bytes of its data (sizes from the offsets)
    b = open(path, "rb").read()
    assert b[:4] == b"GGUF", path
    n_t, n_kv = struct.unpack_from("<QQ", b, 8)
    o = 24
    def s():
        nonlocal o
        n, = struct.unpack_from("<Q", b, o); o += 8 + n
        return b[o - n:o].decode()
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    align = 32
    def val(t):
        nonlocal o
        if t == 8: return s()
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, o); o += 12
            return [val(et) for _ in range(n)]
        v = b[o:o + size[t]]; o += size[t]
        return int.from_bytes(v, "little")
    for _ in range(n_kv):
        k = s(); t, = struct.unpack_from("<I", b, o); o += 4
        v = val(t)
        if k == "general.alignment": align = v
    info = []
    for _ in range(n_t):
        name = s(); nd, = struct.unpack_from("<I", b, o); o += 4 + 8 * nd
        _, off = struct.unpack_from("<IQ", b, o); o += 12
        info.append((off, name))
    base = (o + align - 1) // align * align
    info.sort()
    ends = [x[0] for x in info[1:]] + [len(b) - base]
    return {name: b[base + off:base + end] for (off, name), end in zip(info, ends)}
ft, rtn = tensors(sys.argv[2] + "/model.gguf"), tensors(sys.argv[4])
frozen = [n for n in rtn if any(k in n for k in ("attn_k.", "attn_output.", "ffn_gate.", "ffn_up.", "ffn_down."))]
assert len(frozen) == 5 * 30 * 3, len(frozen)  # codes, scales, zeros of 5 linears x 30 layers
bad = [n for n in frozen if ft[n] != rtn[n]]
assert not bad, bad[:3]  # the frozen linears are RTN's packed bytes, untouched by fine-tuning
def lines(d):
    out = []
    for l in open(d + "/metrics.jsonl"):
        j = json.loads(l); j.pop("seconds", None); out.append(j)
    return out
a, b = lines(sys.argv[1]), lines(sys.argv[2])
assert a == b and len(a) == 4, (a, b)
f = json.load(open(sys.argv[2] + "/final.json"))
t = json.load(open(sys.argv[3]))
assert f["n_test"] == 12 and t["n"] == 12, (f, t)
assert abs(f["test_acc"] - t["acc_tok"]) < 1e-9, (f["test_acc"], t)  # same model, same docs
assert f["packed_bytes"] > 0 and f["train_peak_rss_mib"] > 0, f
PY
        same_predictions "$tmp/f2/test_predictions.jsonl" "$tmp/f2_pred.jsonl"
    then ok "finetune lightweight: thread-count determinism, frozen linears = RTN, test answers = eval-task's"; else ko "finetune: $(head -c 600 "$tmp/err")"; fi
    # finetune --rotate: refused where it has no meaning; a rotated run's model.gguf records the
    # rotation, and eval-task on it answers as the run's own test evaluation did.
    expect_fail "finetune rotate with fp" "rotate needs a quantized --variant" "$zqat" finetune \
        --model "$ZQAT_MODEL" --variant fp --rotate --run-dir "$tmp/f0" --quiet
    if "$zqat" finetune "${fargs[@]}" --rotate --threads 2 --run-dir "$tmp/fr" \
        >"$tmp/fr.json" 2>"$tmp/err" &&
        "$zqat" eval-task --model "$tmp/fr/model.gguf" --task sst2 --split test --n-test 12 \
            --data-dir "$data" --json --quiet --predictions "$tmp/fr_pred.jsonl" \
            >"$tmp/fr_test.json" 2>>"$tmp/err" &&
        "$zqat" inspect "$tmp/fr/model.gguf" 2>>"$tmp/err" | grep -q 'rotation hadamard' &&
        python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c["rotate"] is True, c' \
            "$tmp/fr/config.json" &&
        same_predictions "$tmp/fr/test_predictions.jsonl" "$tmp/fr_pred.jsonl"
    then ok "finetune --rotate: rotation recorded, test answers = eval-task's"; else ko "finetune --rotate: $(head -c 600 "$tmp/err")"; fi
    # CB's answers are "\n" + label: finetune scores them on one row per example (the shared
    # context and "\n"), eval-task on one row per option; the log-likelihoods must agree.
    if "$zqat" finetune --model "$ZQAT_MODEL" --task cb --variant fp --steps 1 --bsz 2 --n-val 2 \
        --n-test 6 --eval-every 1 --lr 1e-4 --data-dir "$data" --threads 2 --json --quiet \
        --run-dir "$tmp/fcb" >/dev/null 2>"$tmp/err" &&
        "$zqat" eval-task --model "$tmp/fcb/model.gguf" --task cb --split test --n-test 6 \
            --data-dir "$data" --threads 2 --json --quiet --predictions "$tmp/fcb_pred.jsonl" \
            >/dev/null 2>>"$tmp/err" &&
        same_predictions "$tmp/fcb/test_predictions.jsonl" "$tmp/fcb_pred.jsonl"
    then ok "finetune cb: one row per example scores as eval-task's row per option"; else ko "finetune cb: $(head -c 600 "$tmp/err")"; fi
    # SQuAD: trained on the gold answer, scored by the greedy answers of the packed export; they
    # are the answers eval-task --split test gives the saved model.gguf.
    if "$zqat" finetune --model "$ZQAT_MODEL" --task squad --variant lightweight --qspec W8A8 \
        --init rtn --steps 2 --bsz 2 --n-train 4 --n-val 2 --n-test 3 --eval-every 1 --lr 1e-4 \
        --data-dir "$data" --threads 2 --json --quiet --run-dir "$tmp/fsq" >/dev/null 2>"$tmp/err" &&
        "$zqat" eval-task --model "$tmp/fsq/model.gguf" --task squad --split test --n-test 3 \
            --data-dir "$data" --threads 2 --json --quiet --predictions "$tmp/fsq_pred.jsonl" \
            >"$tmp/fsq_test.json" 2>>"$tmp/err" &&
        python3 - "$tmp/fsq" "$tmp/fsq_test.json" "$tmp/fsq_pred.jsonl" <<'PY'
import json, sys
f = json.load(open(sys.argv[1] + "/final.json"))
t = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
assert f["metric"] == "f1" and f["n_test"] == 3 and f["n_train"] == 4, f
assert abs(f["test_f1"] - t["f1"]) < 1e-12 and abs(f["test_em"] - t["exact_match"]) < 1e-12, (f, t)
a = [json.loads(l) for l in open(sys.argv[1] + "/test_predictions.jsonl")]
b = [json.loads(l) for l in open(sys.argv[3])]
assert [(x["doc"], x["id"], x["answer"]) for x in a] == [(x["doc"], x["id"], x["answer"]) for x in b], (a, b)
m = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
assert [x["step"] for x in m if "val_f1" in x] == [0, 1, 2] and "val_em" in m[0], m
assert all(x["loss_plus"] > 0 for x in m[1:]), m
PY
    then ok "finetune squad: F1 of greedy answers = eval-task --split test on model.gguf"; else ko "finetune squad: $(head -c 600 "$tmp/err")"; fi
    # Alpaca: loss and metric on the response tokens; the best state is the lowest val loss.
    if "$zqat" finetune --model "$ZQAT_MODEL" --task alpaca --variant lightweight --qspec W8A8 \
        --init rtn --steps 2 --bsz 2 --n-train 4 --n-val 3 --n-test 3 --eval-every 1 --lr 1e-4 \
        --max-len 192 --data-dir "$data" --threads 2 --json --quiet --run-dir "$tmp/fal" \
        >/dev/null 2>"$tmp/err" &&
        python3 - "$tmp/fal" <<'PY'
import json, math, sys
f = json.load(open(sys.argv[1] + "/final.json"))
assert f["metric"] == "loss" and f["n_val"] == 3 and f["test_em"] is None, f
assert 0 < f["test_loss"] < 10 and 0 < f["start_test_loss"] < 10, f
m = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
vals = [(x["step"], x["val_loss"]) for x in m if "val_loss" in x]
best = min(vals, key=lambda v: (v[1], v[0]))
assert f["best_step"] == best[0] and f["best_val_loss"] == best[1], (f, vals)
p = [json.loads(l) for l in open(sys.argv[1] + "/test_predictions.jsonl")]
n = sum(x["tokens"] for x in p)
assert len(p) == 3 and abs(sum(x["nll"] for x in p) / n - f["test_loss"]) < 1e-9, (p, f)
PY
    then ok "finetune alpaca: response NLL, best state = lowest val loss"; else ko "finetune alpaca: $(head -c 600 "$tmp/err")"; fi

    # ZeroQAT: bad flags fail before any work; a run killed with -9 and resumed logs exactly
    # what an uninterrupted run logs; plot draws its curves.
    expect_fail "train bad qspec" "W5A4" "$zqat" train --model "$ZQAT_MODEL" --qspec W5A4 \
        --run-dir "$tmp/r0" --quiet
    expect_fail "train gptq init" "init" "$zqat" train --model "$ZQAT_MODEL" --init gptq \
        --run-dir "$tmp/r0" --quiet
    expect_fail "train bad schedule" "schedule" "$zqat" train --model "$ZQAT_MODEL" \
        --schedule exp --run-dir "$tmp/r0" --quiet
    expect_fail "train act-clip without activation quantization" "act-clip.*W4A16" "$zqat" train \
        --model "$ZQAT_MODEL" --qspec W4A16 --act-clip --run-dir "$tmp/r0" --quiet
    expect_fail "train init-act-clip with rtn" "init-act-clip" "$zqat" train --model "$ZQAT_MODEL" \
        --qspec W4A4 --init rtn --init-act-clip --run-dir "$tmp/r0" --quiet
    targs=(--model "$ZQAT_MODEL" --qspec W8A8 --init rtn --steps 8 --ctx 64 --eval-every 4
        --eval-windows 1 --eval-ctx 128 --final-eval none --save-every 3 --data-dir "$data"
        --threads 2 --quiet)
    if "$zqat" train "${targs[@]}" --run-dir "$tmp/ra" >/dev/null 2>"$tmp/err"; then
        ok "train W8A8 8 steps"
        expect_fail "train refuses an existing run" "already holds a run" "$zqat" train \
            "${targs[@]}" --run-dir "$tmp/ra"
        "$zqat" train "${targs[@]}" --run-dir "$tmp/rb" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 200); do  # kill -9 once a few steps are logged
            [ "$(cat "$tmp/rb/metrics.jsonl" 2>/dev/null | wc -l)" -ge 4 ] && break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        if "$zqat" train --resume "$tmp/rb" --threads 1 --quiet >/dev/null 2>"$tmp/err" &&
            python3 - "$tmp/ra" "$tmp/rb" <<'PY'
import json, sys
def log(d):
    out = []
    for line in open(d + "/metrics.jsonl"):
        j = json.loads(line)
        j.pop("seconds", None)
        out.append(j)
    return out
a, b = (log(d) for d in sys.argv[1:3])
assert a == b, (len(a), len(b))
assert open(sys.argv[1] + "/seeds.tsv").read() == open(sys.argv[2] + "/seeds.tsv").read()
assert open(sys.argv[1] + "/model.gguf", "rb").read() == open(sys.argv[2] + "/model.gguf", "rb").read()
PY
        then ok "kill -9 + resume (1 thread) == uninterrupted (2 threads)"; else ko "resume: $(head -c 300 "$tmp/err")"; fi
        if command -v gnuplot >/dev/null; then
            if "$zqat" plot "$tmp/ra" >/dev/null 2>"$tmp/err" && [ -s "$tmp/ra/curves.png" ]; then
                ok "plot"
            else
                ko "plot: $(head -c 300 "$tmp/err")"
            fi
        fi
    else
        ko "train: $(head -c 300 "$tmp/err")"
    fi
    # Activation clipping end to end: searched by quantize's init and trained by train; the
    # ratios are in the files (inspect lists blk.0.act_clip), in final.json, and eval-ppl reads
    # them back.
    qa="$tmp/qaclip.gguf"
    if "$zqat" quantize --model "$ZQAT_MODEL" --qspec W4A4 --method init --act-clip --ctx 64 \
        --nsamples 2 --search-windows 1 --data-dir "$data" --out "$qa" --json --quiet \
        >"$tmp/qa.json" 2>"$tmp/err" &&
        "$zqat" inspect "$qa" 2>>"$tmp/err" | grep -q "blk.0.act_clip" &&
        "$zqat" train --model "$ZQAT_MODEL" --qspec W4A4 --init rtn --act-clip --lr-act-clip 1e-2 \
            --steps 2 --ctx 64 --eval-every 1 --eval-windows 1 --eval-ctx 128 --val-windows 1 \
            --final-eval none --data-dir "$data" --threads 2 --quiet --run-dir "$tmp/rac" \
            >/dev/null 2>>"$tmp/err" &&
        "$zqat" eval-ppl --model "$tmp/rac/model.gguf" --text "$wiki" --ctx 128 \
            --limit-windows 1 --json --quiet >"$tmp/acppl.json" 2>>"$tmp/err" &&
        python3 - "$tmp/qa.json" "$tmp/rac" "$tmp/acppl.json" <<'PY'
import json, sys
q = json.load(open(sys.argv[1]))
assert all(len(l["act_clip"]) == 4 for l in q["layers"]), q["layers"][0]
fin = json.load(open(sys.argv[2] + "/final.json"))
assert len(fin["act_clip"]) == 30 and any(r != 1.0 for r in fin["act_clip"][0]), fin["act_clip"][0]
m = [json.loads(l) for l in open(sys.argv[2] + "/metrics.jsonl")]
ev = [j for j in m if "eval_ppl" in j]
assert ev and all(j["val_ppl"] > 1 for j in ev), ev
p = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
assert abs(p["ppl"] / ev[-1]["eval_ppl"] - 1) < 1e-9, (p["ppl"], ev[-1]["eval_ppl"])
PY
    then ok "act-clip: quantize --act-clip, train --act-clip, eval-ppl reads the ratios"; else ko "act-clip: $(head -c 600 "$tmp/err")"; fi
    rm -f "$qa"

    if "$zqat" generate --model "$ZQAT_MODEL" --prompt "The capital of France is" -n 8 \
        --quiet >"$tmp/gen" 2>"$tmp/err" && grep -q "Paris" "$tmp/gen"; then
        ok "greedy generate says Paris"
    else
        ko "greedy generate: $(head -c 300 "$tmp/gen") $(head -c 300 "$tmp/err")"
    fi
else
    echo "skip: real-model tier (ZQAT_MODEL unset)"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
