./build/release/zqat eval-ppl --model /work/main/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --text ../shared/data/c4/c4_demo.jsonl --c4-half heldout --ctx 2048 --threads 2 --json --quiet
