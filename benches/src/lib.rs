//! Benchmarks of shmring against its peers (see `benches/`).
