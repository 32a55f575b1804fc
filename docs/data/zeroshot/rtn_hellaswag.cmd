./build/release/zqat eval-task --model .cache/quant/smollm2-135m-W4A4-rtn.gguf --task hellaswag --threads 2 --json --quiet
