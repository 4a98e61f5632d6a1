#!/usr/bin/env bash
# Regenerates vectors.txt: the encodings LLVM's assembler (an assembler independent of this
# crate) gives the instructions listed in vectors.asm. vectors.asm itself is written by
#   KTM_REGEN_VECTORS=1 cargo test --test insn_vectors
# Needs llvm-mc-19 (Debian: apt-get install llvm-19).
set -euo pipefail
cd "$(dirname "$0")"
{
  echo "# llvm-mc-19 -triple bpfel -mcpu=v4 -show-encoding < vectors.asm"
  echo "# $(llvm-mc-19 --version | grep -m1 'LLVM version' | xargs)"
  llvm-mc-19 -triple bpfel -mcpu=v4 -show-encoding < vectors.asm \
    | sed -n 's/^[[:space:]]*\(.*[^[:space:]]\)[[:space:]]*# encoding: \[\(.*\)\]$/\1\t\2/p'
} > vectors.txt
echo "wrote $(grep -vc '^#' vectors.txt) vectors"
