./.cache/bin/zqat-ft eval-task --model .cache/quant/ft-fp-cb_s0-W2A16g64-rtn.gguf --task cb --split test --n-test 56 --threads 2 --json --quiet
