.cache/bin/zqat-exp eval-ppl --model .cache/quant/smollm2-135m-W4A16g64-gptq-ns128.gguf --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 2048 --threads 2 --json --quiet
