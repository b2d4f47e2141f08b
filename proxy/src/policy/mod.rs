//! Policy plugins (DESIGN.md §6): WebAssembly components, in the WIT world
//! `plugins/wit/policy.wit`, asked about every statement after analysis and tenant binding.
//!
//! Invariants: plugins run in configured order and the first deny wins; any failure of a
//! plugin (trap, CPU budget, memory cap, malformed answer, failed load) refuses the statement
//! (fail closed) and is logged with the plugin's name; the set of plugins is swapped atomically
//! on reload, so a statement sees one whole set. Without plugins this module costs nothing.

pub mod cli;
mod convert;
pub mod mask;
mod plugin;
pub mod reload;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use wasmtime::component::Component;
use wasmtime::Engine;

pub use convert::Outcome;
pub use plugin::Plugin;

use crate::config::{PluginSpec, Role};
use crate::errors::{code, UserFacing};

use crate::sql::analyze;

/// Bindings generated from the WIT world.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "policy",
    });
}

pub use bindings::orgwall::policy::types as wit;

/// Errors of the policy layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("plugin `{plugin}` failed to load: {why}")]
    Load { plugin: String, why: String },
    #[error("plugin `{plugin}` {why}")]
    Call { plugin: String, why: String },
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}

/// A statement refused by policy: a plugin's decision (its validated SQLSTATE), or a failure
/// of the policy machinery itself (`42501`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl UserFacing for Refusal {
    fn sqlstate(&self) -> &'static str {
        self.code
    }
    fn client_message(&self) -> String {
        self.message.clone()
    }
}

/// Who is asking, as plugins see it.
#[derive(Debug, Clone)]
pub struct Who<'a> {
    pub user: &'a str,
    pub org_id: Option<&'a str>,
    pub role: Role,
}

/// A configured plugin: loaded, or failed to load (then it refuses every statement).
pub enum Slot {
    Ready(Arc<Plugin>),
    Failed { spec: PluginSpec, why: String },
}

impl Slot {
    pub fn spec(&self) -> &PluginSpec {
        match self {
            Slot::Ready(p) => &p.spec,
            Slot::Failed { spec, .. } => spec,
        }
    }
}

/// The plugins in force, in order.
#[derive(Default)]
pub struct PluginSet {
    pub slots: Vec<Slot>,
}

/// The policy engine every session shares (in `ProxyState`).
pub struct PolicyEngine {
    engine: Engine,
    set: RwLock<Arc<PluginSet>>,
    /// SQLSTATEs plugins used, interned because `ClientError` codes are `&'static str`;
    /// bounded (see [`PolicyEngine::intern`]).
    codes: Mutex<HashSet<&'static str>>,
    compiled: Compiled,
}

/// The analysis of one SQL text, shared by every text of the same shape.
pub struct Analysed {
    /// The shape key (literal-blind; see `sql::shape_key`): the decision caches' key.
    pub(crate) key: Arc<str>,
    /// `sql::fingerprint` of the first text of this shape (for logs and plugins).
    pub(crate) fingerprint: u64,
    pub(crate) infos: Vec<analyze::StatementInfo>,
}

impl Analysed {
    /// The analysis depends on a literal value (a literal `LIMIT`), so texts of the same shape
    /// cannot share it.
    pub(crate) fn literal_limit(&self) -> bool {
        self.infos.iter().any(|i| i.limit.is_some())
    }
}

/// The analysis of `sql` (uncached: `plan::Plan::analysis` keeps it), or the refusal of text
/// that does not parse.
pub(crate) fn analyse(sql: &str) -> Result<Arc<Analysed>, Refusal> {
    let refuse = |why: String| Refusal {
        code: code::SYNTAX_ERROR,
        message: format!("policy: {why}"),
    };
    let Some(shape) = crate::sql::shape_key(sql) else {
        // Tokenizing failed; the parser's error says why.
        return Err(refuse(match analyze::analyze(sql) {
            Err(e) => e.to_string(),
            Ok(_) => "cannot tokenize SQL".into(),
        }));
    };
    let infos = analyze::analyze(sql).map_err(|e| refuse(e.to_string()))?;
    Ok(Arc::new(Analysed {
        key: Arc::from(shape.as_str()),
        fingerprint: crate::sql::fingerprint(sql),
        infos,
    }))
}

/// Compiled components by content hash, so plugins sharing a file (and reloads that did not
/// change it) compile once. Holds only what the last build used.
#[derive(Default)]
pub struct Compiled(Mutex<HashMap<(u64, usize), Component>>);

impl Compiled {
    fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<((u64, usize), Component)> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let key = (h.finish(), bytes.len());
        if let Some(c) = self.lock().get(&key) {
            return Ok((key, c.clone()));
        }
        let c = Component::from_binary(engine, bytes)?;
        self.lock().insert(key, c.clone());
        Ok((key, c))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, usize), Component>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PolicyEngine {
    /// A wasmtime engine with fuel metering; loads `specs` (failures become refusing slots).
    pub fn new(specs: &[PluginSpec]) -> Result<PolicyEngine, PolicyError> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        // Logs name the plugin and the trap; wasm frame lists would only add noise.
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(e.to_string()))?;
        let me = PolicyEngine {
            engine,
            set: RwLock::new(Arc::default()),
            codes: Mutex::new(HashSet::new()),
            compiled: Compiled::default(),
        };
        let set = me.build(specs, &PluginSet::default());
        me.swap(set);
        Ok(me)
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<PluginSet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether any plugin is configured.
    pub fn is_empty(&self) -> bool {
        self.current().slots.is_empty()
    }

    fn swap(&self, set: PluginSet) {
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }

    /// Builds a set for `specs`, reusing plugins from `old` whose spec and file are unchanged;
    /// a plugin that fails to load keeps its old version when there is one.
    pub fn build(&self, specs: &[PluginSpec], old: &PluginSet) -> PluginSet {
        let mut slots = Vec::with_capacity(specs.len());
        for spec in specs {
            let previous = old.slots.iter().find_map(|s| match s {
                Slot::Ready(p) if p.spec.name == spec.name => Some(p.clone()),
                _ => None,
            });
            let mtime = std::fs::metadata(&spec.path)
                .and_then(|m| m.modified())
                .ok();
            if let Some(p) = &previous {
                if p.spec == *spec && p.mtime == mtime {
                    slots.push(Slot::Ready(p.clone()));
                    continue;
                }
            }
            match Plugin::load(&self.engine, spec, &self.compiled) {
                Ok(p) => {
                    tracing::info!(plugin = %spec.name, path = %spec.path.display(), caches = p.caches(), "policy plugin loaded");
                    slots.push(Slot::Ready(Arc::new(p)));
                }
                Err(e) => match previous {
                    Some(p) => {
                        tracing::error!(plugin = %spec.name, error = %e, "plugin reload failed; keeping the previous version");
                        slots.push(Slot::Ready(p));
                    }
                    None => {
                        tracing::error!(plugin = %spec.name, error = %e, "plugin failed to load; statements will be refused until it loads");
                        slots.push(Slot::Failed {
                            spec: spec.clone(),
                            why: e.to_string(),
                        });
                    }
                },
            }
        }
        // Forget compilations no plugin uses any more (a reload replaced them).
        let keep: Vec<_> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Ready(p) => Some(p.component_key),
                Slot::Failed { .. } => None,
            })
            .collect();
        self.compiled.lock().retain(|k, _| keep.contains(k));
        PluginSet { slots }
    }

    /// Rebuilds the set from `specs` and swaps it in; in-flight checks finish on the old set.
    pub fn reload(&self, specs: &[PluginSpec]) {
        let old = self.current();
        let set = self.build(specs, &old);
        self.swap(set);
    }

    /// Checks `sql` for `who`: `Ok(None)` to run it as is, `Ok(Some(sql))` to run masked SQL
    /// instead, or a refusal. `analysed` gives its analysis (asked only when a plugin is
    /// configured).
    pub fn check(
        &self,
        who: &Who<'_>,
        sql: &str,
        analysed: impl FnOnce() -> Result<Arc<Analysed>, Refusal>,
    ) -> Result<Option<String>, Refusal> {
        let set = self.current();
        if set.slots.is_empty() {
            return Ok(None);
        }
        let analysed = analysed()?;
        let fingerprint = analysed.fingerprint;
        let infos = &analysed.infos;
        let mut masks = Vec::new();
        for (index, info) in infos.iter().enumerate() {
            let at = convert::At {
                sql,
                fingerprint,
                shape: &analysed.key,
                index,
            };
            match convert::decide(&set, who, &at, info) {
                Outcome::Allow => {}
                Outcome::Mask(m) => masks.extend(m),
                Outcome::Deny { code, message } => {
                    return Err(Refusal {
                        code: self.intern(&code),
                        message,
                    })
                }
            }
        }
        if masks.is_empty() {
            return Ok(None);
        }
        if infos.len() != 1 {
            return Err(Refusal {
                code: code::INSUFFICIENT_PRIVILEGE,
                message: "policy: masked columns cannot be used in a multi-statement query".into(),
            });
        }
        mask::apply(sql, &masks).map(Some).map_err(|e| Refusal {
            code: code::INSUFFICIENT_PRIVILEGE,
            message: format!("policy: {e}"),
        })
    }

    /// A `&'static` SQLSTATE for a plugin's (validated) code. At most 256 distinct codes are
    /// interned; past that, `42501` is used, so a plugin cannot grow memory without bound.
    fn intern(&self, code: &str) -> &'static str {
        let valid = code.len() == 5
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if !valid || code.starts_with("00") {
            return code::INSUFFICIENT_PRIVILEGE;
        }
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = codes.get(code) {
            return c;
        }
        if codes.len() >= 256 {
            return code::INSUFFICIENT_PRIVILEGE;
        }
        let leaked: &'static str = Box::leak(code.to_string().into_boxed_str());
        codes.insert(leaked);
        leaked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_engine_allows_everything_without_parsing() {
        let e = PolicyEngine::new(&[]).expect("engine");
        let who = Who {
            user: "u",
            org_id: None,
            role: Role::Tenant,
        };
        assert_eq!(
            e.check(&who, "not even sql", || analyse("not even sql")),
            Ok(None)
        );
    }

    #[test]
    fn sqlstates_are_validated_and_interned() {
        let e = PolicyEngine::new(&[]).expect("engine");
        assert_eq!(e.intern("54000"), "54000");
        assert!(std::ptr::eq(e.intern("54000"), e.intern("54000")));
        assert_eq!(e.intern("oops"), "42501");
        assert_eq!(e.intern("00000"), "42501");
        assert_eq!(e.intern("4250!"), "42501");
    }

    #[test]
    fn a_missing_plugin_refuses_every_statement() {
        let spec = PluginSpec {
            name: "gone".into(),
            path: "/nonexistent/gone.wasm".into(),
            config_json: "{}".into(),
            fuel: 1000,
            init_fuel: 10_000,
            memory_bytes: 1 << 20,
            cache: true,
        };
        let e = PolicyEngine::new(&[spec]).expect("engine");
        let who = Who {
            user: "u",
            org_id: Some("o"),
            role: Role::Admin,
        };
        let r = e
            .check(&who, "SELECT 1", || analyse("SELECT 1"))
            .unwrap_err();
        assert_eq!(r.code, "42501");
        assert!(r.message.contains("gone"), "{}", r.message);
    }
}
