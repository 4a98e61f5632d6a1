package ktm_test

// sysBPF is bpf(2) on arm64 (the syscall package of Go 1.19 has no SYS_BPF).
const sysBPF = 280
