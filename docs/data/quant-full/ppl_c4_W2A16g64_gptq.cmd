./build/release/zqat eval-ppl --model .cache/quant/smollm2-135m-W2A16g64-gptq.gguf --text ../shared/data/c4/c4_demo.jsonl --c4-half heldout --ctx 2048 --threads 1 --json --quiet
