//! `orgwall demo`: a private PostgreSQL, the seed schema, two demo tenants, the proxy.
