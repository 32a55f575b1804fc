./build/release/zqat eval-task --model .cache/quant/smollm2-135m-W4A4-init.gguf --task arc_easy --threads 2 --json --quiet
