//! Benchmarks for d2o. The interesting part is the `floor` binary: what the bare
//! `delta_kernel` scan and a hand-written NDJSON writer cost for a table, measured the way
//! `perf-floors.md` describes, so that `/query` can be compared with it in the same run.
//!
//! See `docs/benchmarks.md` and `bench/query_bench.sh`.
