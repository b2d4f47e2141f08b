//! The `orgwall` command line: `serve`, `demo`.

fn main() {}
