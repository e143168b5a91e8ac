"""The replicated state machine: commands, deterministic apply, RocksDB storage, Raft."""
