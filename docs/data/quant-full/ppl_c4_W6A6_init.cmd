./.cache/bin/zqat-tr eval-ppl --model .cache/quant/smollm2-135m-W6A6-init.gguf --text ../shared/data/c4/c4_demo.jsonl --c4-half heldout --ctx 2048 --threads 2 --json --quiet
