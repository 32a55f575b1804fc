./.cache/bin/zqat-tr eval-ppl --model .cache/quant/smollm2-135m-W6A6-init.gguf --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 2048 --threads 2 --json --quiet
