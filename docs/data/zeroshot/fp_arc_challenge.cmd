./build/release/zqat eval-task --model /work/main/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --task arc_challenge --threads 2 --json --quiet
