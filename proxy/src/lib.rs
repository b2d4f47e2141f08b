//! Orgwall: a PostgreSQL wire-protocol proxy that confines every statement to a tenant.
//!
//! Module map, in the order a connection flows through them (DESIGN.md §2):
//! - [`config`]: TOML + environment, validated at load.
//! - [`listen`], [`server`]: the listening sockets (TCP, Unix), the accept loop and graceful
//!   drain; [`state`]: what every connection shares (`ProxyState`); [`admission`]: the
//!   startup gate and the client slots (with the admin reserve).
//! - [`startup`]: what `orgwall serve` checks first (upstream logins, file-descriptor limit).
//! - [`frontend`]: one client's handshake — SSLRequest/TLS, startup, SCRAM, cancel requests.
//! - [`session`]: the per-client protocol loop (simple + extended), statement names, pooling.
//! - [`jwt`]: verification of switchers' tenant tokens (signature by `kid`, claim rules).
//! - [`sql`]: pure functions over SQL text (no I/O); the seam where the rewriter plugs in.
//! - [`policy`]: WebAssembly policy plugins (wasmtime host), asked about every statement.
//! - [`boundary`]: the second wall — the signed tenant context PostgreSQL's row-level security
//!   checks, the start-up check of the tenant identity, the tripwire.
//! - [`upstream`]: connections to PostgreSQL, the pool, the server-side statement cache.
//! - [`clients`]: the registry of logged-in clients (`SHOW CLIENTS`).
//! - [`cancel`]: the registry that routes a client's cancel to the backend running its query.
//! - [`errors`]: `UserFacing` (each module's errors say their SQLSTATE and client message) and
//!   `ClientError`, the ErrorResponse they become.
//! - [`logging`]: log format, colour, the dependency cap, rate-limited warnings.
//! - [`admin`]: the `/metrics` and `/healthz` endpoint (`[admin] listen`), console rows, reload;
//!   [`metrics`]: the Prometheus registry.
//!
//! Imports between these modules point one way (ARCHITECTURE.md, "Layers";
//! `proxy/tests/layers.rs` fails on a circle).
//! - [`wire`], [`scram`]: protocol framing and SCRAM primitives shared by both sides.
//! - [`localpg`], [`demo`]: a private PostgreSQL for `orgwall demo` and the test suite.
//! - [`balances`]: the inventory balance cache fed by logical replication; answers balance
//!   lookups locally after the tenant rewrite.
//! - [`bench`]: `orgwall bench balances`, the balance cache's load test against a running Orgwall.
//! - [`migrate`]: admin tooling — `orgwall migrate` (the migration guide as resumable steps) and `reconcile`.

pub mod admin;
pub mod admission;
pub mod balances;
pub mod bench;
pub mod boundary;
pub mod cancel;
pub mod clients;
pub mod config;
pub mod demo;
pub(crate) mod duplex;
pub mod errors;
pub mod frontend;
pub mod jwt;
pub mod listen;
pub mod localpg;
pub mod logging;
pub mod lru;
pub mod metrics;
pub mod migrate;
pub mod plan;
pub mod policy;
pub mod scram;
pub mod server;
pub mod session;
pub mod sql;
pub mod startup;
pub mod state;
pub mod upstream;
pub mod wire;
