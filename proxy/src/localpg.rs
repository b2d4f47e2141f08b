//! A private, throw-away or persistent PostgreSQL server for `orgwall demo` and the tests.
