#!/usr/bin/env bash
# Regenerates the fine-tuning sections of docs/RESULTS.md (task accuracy) and docs/PERF.md
# (memory of lightweight vs fp fine-tuning): SmolLM2-135M fine-tuned by `zqat finetune`
# (MeZO protocol, include/zqat/train/finetune.h) on choice tasks, and the paper's comparison rows:
#   zero-shot   the quantized start, before any step (finetune's start_test_acc)
#   lightweight ZeroQAT lightweight: q/v train in fp32 (fake-quant), the rest packed
#   fp          MeZO on the FP model; fp+rtn, fp+smoothquant: that model quantized afterwards
# Each run's final.json (and the eval-task JSON of the PTQ rows) is copied, with its command,
# into the tracked folder docs/data/finetune/, with its machine (NAME.machine.json; machine.json
# is the machine of the results from before those files); run dirs live in .cache/runs/. A result whose
# JSON exists is skipped, so a run cut short resumes.
#
# Usage: scripts/finetune_results.sh [threads]
# Environment (defaults in brackets):
#   RUNS   [accuracy memory]  accuracy: the task table; memory: lightweight vs fp peak RSS at
#          the same (bsz, ctx), 20 steps each, one after the other in this script run;
#          lr: the learning-rate choice, SST-2 lightweight W4A4 and fp for PROBE_STEPS [40] at each
#          of LRS [1e-6 1e-5 1e-4], judged on the validation split only (never on test; the
#          same N_VAL / N_TEST as the accuracy runs, so the validation set is theirs);
#          diagnose: what holds lightweight back (SST-2, validation only; see below)
#          gen: SQuAD (GEN_TASKS [squad]), GEN_SPECS [fp W4A4] (fp: FP ZO; a qspec: lightweight
#          at it; one script run per spec can run side by side), test F1 / EM of
#          the greedy answers, GEN_STEPS [100] x GEN_BSZ [8], GEN_N_VAL [20], GEN_N_TEST [97]
#   TASKS [sst2 cb]  SPECS [W4A4 W2A16g64]  ROT_SPECS [W4A4] (also run lightweight from a
#   Hadamard-rotated init, finetune --rotate: "lightrot_" results)  SEEDS [0]  STEPS [500]  BSZ [16]
#   LR_LIGHT [1e-6] LR_FP [1e-6] EVAL_EVERY [100]  N_VAL [500] N_TEST [1000]  ZQAT_BIN (see below)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
# ZQAT_BIN: a zqat binary to use instead of building build/release (e.g. while another script
# runs from build/release).
if [ -z "${ZQAT_BIN:-}" ]; then bash scripts/build.sh release zqat >/dev/null; fi
model="$(bash scripts/fetch_model.sh)"
out=docs/data/finetune
runs=.cache/runs
mkdir -p "$out" "$runs" .cache/quant
zqat="${ZQAT_BIN:-./build/release/zqat}"
steps="${STEPS:-500}" bsz="${BSZ:-16}" every="${EVAL_EVERY:-100}"
lr_light="${LR_LIGHT:-1e-6}" lr_fp="${LR_FP:-1e-6}"
n_val="${N_VAL:-500}" n_test="${N_TEST:-1000}"
common=(--model "$model" --bsz "$bsz" --threads "$threads" --json --quiet)

# ft NAME RUN_DIR ARGS...: a finetune run unless $out/NAME.json exists; its final JSON kept
ft() {
    local name="$1" dir="$2"
    shift 2
    if [ -s "$out/$name.json" ]; then return; fi
    rm -rf "$dir"
    echo "running: zqat finetune $* --run-dir $dir" >&2
    "$zqat" finetune "$@" --run-dir "$dir" >"$out/$name.json.tmp"
    printf '{"cpu": "%s", "threads": %s}\n' "$(lscpu | sed -n 's/^Model name: *//p')" \
        "$threads" >"$out/$name.machine.json"
    mv "$out/$name.json.tmp" "$out/$name.json"
    printf '%s\n' "$zqat finetune $* --run-dir $dir" >"$out/$name.cmd"
    cp "$dir/metrics.jsonl" "$out/$name.metrics.jsonl"
}

source scripts/lib.sh  # run NAME CMD...

# answers NAME RUN_DIR: a finished run's test answers (test_predictions.jsonl, the format of
# eval-task --predictions) kept as $out/NAME.predictions.jsonl
answers() {
    [ -s "$out/$1.predictions.jsonl" ] || cp "$2/test_predictions.jsonl" "$out/$1.predictions.jsonl"
}

for what in ${RUNS:-accuracy memory}; do
    case "$what" in
    accuracy)
        for task in ${TASKS:-sst2 cb}; do
            # The FP model's own answers on the test split: how far from chance it starts.
            run "zeroshot_fp_$task" "$zqat" eval-task --model "$model" --task "$task" \
                --split test --n-test "$n_test" --threads "$threads" --json --quiet \
                --predictions "$out/zeroshot_fp_$task.predictions.jsonl"
            for seed in ${SEEDS:-0}; do
                tag="${task}_s$seed"
                ft "fp_$tag" "$runs/ft-fp-$tag" "${common[@]}" --task "$task" --variant fp \
                    --n-val "$n_val" --n-test "$n_test" --steps "$steps" --lr "$lr_fp" \
                    --eval-every "$every" --seed "$seed"
                answers "fp_$tag" "$runs/ft-fp-$tag"
                for spec in ${SPECS:-W4A4 W2A16g64}; do
                    ft "light_${spec}_$tag" "$runs/ft-light-$spec-$tag" "${common[@]}" \
                        --task "$task" --variant lightweight --qspec "$spec" --init init \
                        --n-val "$n_val" --n-test "$n_test" --steps "$steps" --lr "$lr_light" \
                        --eval-every "$every" --seed "$seed"
                    answers "light_${spec}_$tag" "$runs/ft-light-$spec-$tag"
                    if [[ " ${ROT_SPECS-W4A4} " == *" $spec "* ]]; then
                        # The same run from a Hadamard-rotated init (finetune --rotate)
                        ft "lightrot_${spec}_$tag" "$runs/ft-lightrot-$spec-$tag" \
                            "${common[@]}" --task "$task" --variant lightweight --qspec "$spec" \
                            --init init --rotate --n-val "$n_val" --n-test "$n_test" \
                            --steps "$steps" --lr "$lr_light" --eval-every "$every" --seed "$seed"
                        answers "lightrot_${spec}_$tag" "$runs/ft-lightrot-$spec-$tag"
                    fi
                    for m in rtn smoothquant; do
                        q=".cache/quant/ft-fp-$tag-$spec-$m.gguf"
                        [ -s "$out/ptq_${m}_${spec}_$tag.json" ] || [ -s "$q" ] ||
                            "$zqat" quantize --model "$runs/ft-fp-$tag/model.gguf" --qspec "$spec" \
                                --method "$m" --calib wikitext2,c4 --nsamples 32 --ctx 512 \
                                --seed "$seed" --out "$q" --threads "$threads" --quiet >/dev/null
                        run "ptq_${m}_${spec}_$tag" "$zqat" eval-task --model "$q" --task "$task" \
                            --split test --n-test "$n_test" --threads "$threads" --json --quiet \
                            --predictions "$out/ptq_${m}_${spec}_$tag.predictions.jsonl"
                    done
                done
            done
        done
        ;;
    lr)
        for lr in ${LRS:-1e-6 1e-5 1e-4}; do
            for v in lightweight fp; do
                ft "lr_${v}_$lr" "$runs/ft-lr-$v-$lr" "${common[@]}" --task sst2 --variant "$v" \
                    --qspec W4A4 --init init --steps "${PROBE_STEPS:-40}" --lr "$lr" \
                    --eval-every "${PROBE_STEPS:-40}" --n-val "$n_val" --n-test "$n_test" --seed 0
            done
        done
        ;;
    diagnose)
        # What holds lightweight back on SST-2, judged on validation only: the same run at a
        # spec whose rounding barely moves the loss (W8A16 from RTN) with FP ZO's lr, which
        # isolates training only q/v; and W4A4 with a perturbation near the size of a rounding
        # step (EPS_WIDE [1e-2]), which smooths over the roundings that flip, at both lrs.
        ft "diag_light_W8A16_eps1e-3_lr${lr_fp}" "$runs/ft-diag-w8" "${common[@]}" --task sst2 \
            --variant lightweight --qspec W8A16 --init rtn --lr "$lr_fp" --steps "$steps" \
            --eval-every "$every" --n-val "$n_val" --n-test "$n_test" --seed 0
        wide="${EPS_WIDE:-1e-2}"
        for lr in $lr_light $lr_fp; do
            ft "diag_light_W4A4_eps${wide}_lr$lr" "$runs/ft-diag-w4-$lr" "${common[@]}" \
                --task sst2 --variant lightweight --qspec W4A4 --init init --eps "$wide" \
                --lr "$lr" --steps "$steps" --eval-every "$every" --n-val "$n_val" \
                --n-test "$n_test" --seed 0
        done
        # The wide-eps W4A4 run at FP ZO's lr for LONG_STEPS [400]: does its falling loss turn
        # into validation accuracy given more steps?
        long="${LONG_STEPS:-400}"
        ft "diag_light_W4A4_eps${wide}_lr${lr_fp}_${long}steps" "$runs/ft-diag-w4-long" \
            "${common[@]}" --task sst2 --variant lightweight --qspec W4A4 --init init \
            --eps "$wide" --lr "$lr_fp" --steps "$long" --eval-every 50 --n-val "$n_val" \
            --n-test "$n_test" --seed 0
        ;;
    gen)
        # Trained on the gold answer (loss on its tokens), scored by the greedy answer's token
        # F1: validation picks the state, test reports it (finetune.h). Generation costs a
        # forward per new token, so the splits are small.
        g=(--model "$model" --bsz "${GEN_BSZ:-8}" --threads "$threads" --json --quiet
            --steps "${GEN_STEPS:-100}" --eval-every "${GEN_EVAL_EVERY:-25}"
            --n-val "${GEN_N_VAL:-20}" --n-test "${GEN_N_TEST:-97}")
        for task in ${GEN_TASKS:-squad}; do
            for seed in ${SEEDS:-0}; do
                if [[ " ${GEN_SPECS:-fp W4A4} " == *" fp "* ]]; then
                    ft "gen_fp_${task}_s$seed" "$runs/ft-gen-fp-$task-s$seed" "${g[@]}" \
                        --task "$task" --variant fp --lr "$lr_fp" --seed "$seed"
                    answers "gen_fp_${task}_s$seed" "$runs/ft-gen-fp-$task-s$seed"
                fi
                for spec in ${GEN_SPECS:-fp W4A4}; do
                    [ "$spec" != fp ] || continue
                    n="gen_light_${spec}_${task}_s$seed"
                    ft "$n" "$runs/ft-gen-light-$spec-$task-s$seed" "${g[@]}" --task "$task" \
                        --variant lightweight --qspec "$spec" --init init --lr "$lr_light" \
                        --seed "$seed"
                    answers "$n" "$runs/ft-gen-light-$spec-$task-s$seed"
                done
            done
        done
        ;;
    memory)
        # Same task, bsz and ctx for both variants; the fine-tuning phase's peak RSS (after the
        # initialisation) and the whole process's.
        for v in lightweight fp; do
            ft "mem_$v" "$runs/ft-mem-$v" "${common[@]}" --task sst2 --variant "$v" \
                --qspec W4A4 --init rtn --steps 20 --lr 1e-6 --eval-every 20 --n-val 32 \
                --n-test 32
        done
        ;;
    *) echo "finetune_results: unknown run '$what' (accuracy, lr, diagnose, memory, gen)" >&2; exit 2 ;;
    esac
done
python3 scripts/render_finetune_results.py "$out"
