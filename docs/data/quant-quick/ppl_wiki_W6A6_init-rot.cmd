.cache/bin/zqat-rot2 eval-ppl --model .cache/quant/smollm2-135m-W6A6-init-rot.gguf --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 2048 --threads 2 --limit-windows 8 --json --quiet
