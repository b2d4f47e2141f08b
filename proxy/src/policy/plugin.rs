//! One loaded plugin: its compiled component and `InstancePre`, a pool of ready instances
//! (each with its own `Store`, fuel budget and memory cap), and its decision cache.
//!
//! Invariants: an instance is used by one call at a time and returned to the pool only after a
//! call that completed normally; an instance that trapped, ran out of fuel or answered
//! nonsense is dropped (a fresh one is made on the next call). Plugins get no WASI: every
//! import other than `log` traps.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::bindings::orgwall::policy::types as wit;
use super::bindings::{Policy, PolicyPre};
use super::PolicyError;
use crate::config::PluginSpec;

/// Per-store data: the memory limiter and the plugin name for `log`.
pub(super) struct HostState {
    limits: StoreLimits,
    name: Arc<str>,
}

impl super::bindings::PolicyImports for HostState {
    fn log(&mut self, level: wit::Level, message: String) {
        let mut m = message;
        if m.len() > 1024 {
            let mut cut = 1024;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        let plugin = &*self.name;
        match level {
            wit::Level::Debug => tracing::debug!(plugin, "{m}"),
            wit::Level::Info => tracing::info!(plugin, "{m}"),
            wit::Level::Warn => tracing::warn!(plugin, "{m}"),
            wit::Level::Error => tracing::error!(plugin, "{m}"),
        }
    }
}

impl wit::Host for HostState {}

/// A ready instance: its store and bindings.
struct Slot {
    store: Store<HostState>,
    bindings: Policy,
}

/// Cache key: (shape key of the SQL string, (statement index in it, part: 0 for the statement,
/// then its nested writes), literal LIMIT, role, user, org). The shape key is exact up to
/// literal values (see `sql::shape_key`); the org is a switcher's current one.
pub(super) type CacheKey = (
    Arc<str>,
    (usize, usize),
    Option<u64>,
    &'static str,
    String,
    Option<String>,
);

/// Decision caches are cleared when they reach this many entries.
const CACHE_CAP: usize = 50_000;

/// A compiled, initialised plugin.
pub struct Plugin {
    pub name: Arc<str>,
    pub path: PathBuf,
    /// The spec it was loaded from (reload compares it).
    pub spec: PluginSpec,
    /// File modification time at load, for hot reload.
    pub mtime: Option<std::time::SystemTime>,
    pre: PolicyPre<HostState>,
    /// Which compiled component this is (see `Compiled`).
    pub(super) component_key: (u64, usize),
    engine: Engine,
    config_json: String,
    idle: Mutex<Vec<Slot>>,
    /// Present when the plugin declared itself deterministic and caching is on.
    cache: Option<DashMap<CacheKey, wit::Decision>>,
}

impl Plugin {
    /// Compiles `spec.path`, links it and makes one instance (running `init`) to prove it works.
    pub fn load(
        engine: &Engine,
        spec: &PluginSpec,
        compiled: &super::Compiled,
    ) -> Result<Plugin, PolicyError> {
        let failed = |why: String| PolicyError::Load {
            plugin: spec.name.clone(),
            why,
        };
        let bytes = std::fs::read(&spec.path)
            .map_err(|e| failed(format!("cannot read {}: {e}", spec.path.display())))?;
        let mtime = std::fs::metadata(&spec.path)
            .and_then(|m| m.modified())
            .ok();
        let (component_key, component) = compiled
            .get_or_compile(engine, &bytes)
            .map_err(|e| failed(format!("not a valid component: {e}")))?;
        let mut linker: Linker<HostState> = Linker::new(engine);
        Policy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| failed(format!("linking: {e}")))?;
        // No capabilities: any other import (WASI) is defined to trap when called.
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| failed(format!("linking: {e}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(PolicyPre::new)
            .map_err(|e| {
                failed(format!(
                    "does not implement orgwall:policy/policy@0.1.0: {e}"
                ))
            })?;
        let mut plugin = Plugin {
            name: spec.name.as_str().into(),
            path: spec.path.clone(),
            spec: spec.clone(),
            mtime,
            pre,
            component_key,
            engine: engine.clone(),
            config_json: spec.config_json.clone(),
            idle: Mutex::new(Vec::new()),
            cache: None,
        };
        let (slot, info) = plugin.instantiate().map_err(|e| match e {
            PolicyError::Call { why, .. } => failed(why),
            other => failed(other.to_string()),
        })?;
        if info.deterministic && spec.cache {
            plugin.cache = Some(DashMap::new());
        }
        plugin.idle_slots().push(slot);
        Ok(plugin)
    }

    /// Whether decisions are cached.
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    fn idle_slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new instance with `init` run under the init fuel budget.
    fn instantiate(&self) -> Result<(Slot, wit::PluginInfo), PolicyError> {
        let failed = |why: String| PolicyError::Call {
            plugin: self.name.to_string(),
            why,
        };
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.spec.memory_bytes)
            .instances(16)
            .tables(16)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                limits,
                name: self.name.clone(),
            },
        );
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(self.spec.init_fuel)
            .map_err(|e| failed(e.to_string()))?;
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| failed(format!("instantiation failed: {e}")))?;
        let info = bindings
            .call_init(&mut store, &self.config_json)
            .map_err(|e| failed(format!("init trapped: {}", describe(&e))))?
            .map_err(|why| failed(format!("init refused its config: {why}")))?;
        Ok((Slot { store, bindings }, info))
    }

    /// The cached decision for `key`, when the plugin caches and has one.
    pub(super) fn cached(&self, key: &CacheKey) -> Option<wit::Decision> {
        self.cache.as_ref()?.get(key).map(|d| d.clone())
    }

    /// Asks the plugin about one statement (callers look in [`Plugin::cached`] first); the
    /// decision is cached under `key` when the plugin caches. Errors (trap, fuel, failed
    /// instantiation) mean the caller must refuse the statement.
    pub(super) fn check(
        &self,
        key: &CacheKey,
        who: &wit::Principal,
        stmt: &wit::Statement,
    ) -> Result<wit::Decision, PolicyError> {
        let popped = self.idle_slots().pop();
        let mut slot = match popped {
            Some(s) => s,
            None => self.instantiate()?.0,
        };
        slot.store
            .set_fuel(self.spec.fuel)
            .map_err(|e| self.call_failed(e.to_string()))?;
        let decision = slot
            .bindings
            .call_check(&mut slot.store, who, stmt)
            .map_err(|e| self.call_failed(describe(&e)))?;
        // Only a well-formed answer earns the instance its place back in the pool.
        validate(&decision).map_err(|why| self.call_failed(why))?;
        self.idle_slots().push(slot);
        if let Some(cache) = &self.cache {
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(key.clone(), decision.clone());
        }
        Ok(decision)
    }

    fn call_failed(&self, why: String) -> PolicyError {
        PolicyError::Call {
            plugin: self.name.to_string(),
            why,
        }
    }
}

/// Rejects decisions that cannot be acted on.
fn validate(d: &wit::Decision) -> Result<(), String> {
    match d {
        wit::Decision::Mask(cols) if cols.is_empty() => Err("mask with no columns".into()),
        wit::Decision::Mask(cols) => match cols
            .iter()
            .find(|c| !is_identifier(&c.table) || !is_identifier(&c.column))
        {
            Some(c) => Err(format!(
                "mask names an invalid column `{}.{}`",
                c.table, c.column
            )),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && !s.contains(['\0', '"'])
}

/// A trap's short description (out of fuel, memory limit, panic, ...).
fn describe(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => "exceeded its CPU budget (out of fuel)".into(),
        Some(t) => format!("trapped: {t}"),
        None => format!("failed: {e}"),
    }
}
