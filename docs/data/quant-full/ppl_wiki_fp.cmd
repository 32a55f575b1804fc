./build/release/zqat eval-ppl --model /work/main/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --text ../shared/data/wikitext-2-raw/wiki.test.raw --ctx 2048 --threads 2 --json --quiet
