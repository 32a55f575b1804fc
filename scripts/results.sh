#!/usr/bin/env bash
# Regenerates docs/RESULTS.md: perplexity of the default model on WikiText-2 test under both
# protocols at ctx 2048 and 512, every window, with the exact commands. Takes tens of minutes on
# 2 cores. Usage: scripts/results.sh [threads]   (env LIMIT_WINDOWS=K for a quick partial run)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
bash scripts/build.sh release zqat >/dev/null
model="$(bash scripts/fetch_model.sh)"
wiki="../shared/data/wikitext-2-raw/wiki.test.raw"
out="$(mktemp -d)"
limit=()
[ -n "${LIMIT_WINDOWS:-}" ] && limit=(--limit-windows "$LIMIT_WINDOWS")
for ctx in 2048 512; do
    for proto in gptq llamacpp; do
        cmd=(./build/release/zqat eval-ppl --model "$model" --text "$wiki" --ctx "$ctx"
             --ppl-protocol "$proto" --threads "$threads" "${limit[@]}" --json)
        echo "running: ${cmd[*]}" >&2
        "${cmd[@]}" >"$out/ppl_${ctx}_${proto}.json"
        printf '%s\n' "${cmd[*]}" >"$out/ppl_${ctx}_${proto}.cmd"
    done
done
python3 scripts/render_results.py "$out" "$(lscpu | sed -n 's/^Model name: *//p')" \
    >docs/RESULTS.md.tmp
# Sections other scripts splice in (scripts/quant_results.sh) are kept.
python3 - <<'PY'
import re
old = open("docs/RESULTS.md").read()
blocks = re.findall(r"<!-- BEGIN [\w-]+ -->.*?<!-- END [\w-]+ -->\n", old, re.S)
new = open("docs/RESULTS.md.tmp").read().rstrip() + "\n"
open("docs/RESULTS.md.tmp", "w").write(new + "".join("\n" + b for b in blocks))
PY
mv docs/RESULTS.md.tmp docs/RESULTS.md
echo "wrote docs/RESULTS.md" >&2
