./build/release/bench/gptq_heldout --model /work/main/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --data ../shared/data --bits 4 --group 64 --nsamples 32 --ctx 2048 --heldout-windows 8 --threads 2
