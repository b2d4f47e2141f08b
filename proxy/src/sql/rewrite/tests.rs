//! Table-driven rewriter tests.
