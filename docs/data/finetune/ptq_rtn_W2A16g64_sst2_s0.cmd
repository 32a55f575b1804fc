./.cache/bin/zqat-ft eval-task --model .cache/quant/ft-fp-sst2_s0-W2A16g64-rtn.gguf --task sst2 --split test --n-test 500 --threads 2 --json --quiet
