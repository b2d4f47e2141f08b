//! Hot reload: once a second, compares the config file's and every plugin file's modification
//! time with what was last seen; on a change, rereads `[[plugins]]` and rebuilds the set on a
//! blocking thread (compiling is CPU work), then swaps it in atomically. Errors keep what runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::PolicyEngine;
use crate::config::{self, PluginSpec};

/// How often files are checked.
pub const POLL: Duration = Duration::from_secs(1);

/// Watches `config_file` (if any) and the plugin files until `stop` fires.
pub async fn watch(
    engine: Arc<PolicyEngine>,
    config_file: Option<PathBuf>,
    mut specs: Vec<PluginSpec>,
    stop: CancellationToken,
) {
    let mut seen = snapshot(config_file.as_ref(), &specs);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = snapshot(config_file.as_ref(), &specs);
        if now == seen {
            continue;
        }
        if let Some(path) = &config_file {
            match config::load_plugin_specs(path) {
                Ok(s) => specs = s,
                Err(e) => {
                    tracing::error!(error = %e, "plugin config reload failed; keeping the running plugins");
                    seen = now;
                    continue;
                }
            }
        }
        tracing::info!("plugin files changed; reloading policy plugins");
        let (e, s) = (engine.clone(), specs.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || e.reload(&s)).await {
            tracing::error!(error = %e, "plugin reload task failed; keeping the running plugins");
        }
        // Files listed by a changed config are part of the next comparison.
        seen = snapshot(config_file.as_ref(), &specs);
    }
}

type Snapshot = BTreeMap<PathBuf, Option<SystemTime>>;

fn snapshot(config_file: Option<&PathBuf>, specs: &[PluginSpec]) -> Snapshot {
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    config_file
        .into_iter()
        .chain(specs.iter().map(|s| &s.path))
        .map(|p| (p.clone(), mtime(p)))
        .collect()
}
