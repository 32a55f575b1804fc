./build/release/zqat eval-ppl --model .cache/quant/smollm2-135m-W2A16g64-gptq.gguf --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 2048 --threads 1 --json --quiet
