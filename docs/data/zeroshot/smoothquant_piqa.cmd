./build/release/zqat eval-task --model .cache/quant/smollm2-135m-W4A4-smoothquant.gguf --task piqa --threads 2 --json --quiet
