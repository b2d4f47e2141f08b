//! Tenant rewriter (DESIGN.md §4): sqlparser AST in, confined SQL template or a refusal out.
