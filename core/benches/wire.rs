//! Wire-layer benchmarks (filled in with the wire layer).
fn main() {}
