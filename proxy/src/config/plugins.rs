//! `[[plugins]]`: policy plugin entries, resolved against the config file's folder.

use super::*;

/// One `[[plugins]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    name: String,
    path: PathBuf,
    config: Option<toml::Table>,
    fuel: Option<u64>,
    memory_mb: Option<u64>,
    cache: Option<bool>,
}

/// A policy plugin to load (`[[plugins]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    pub name: String,
    /// The `.wasm` component, resolved against the config file's folder.
    pub path: PathBuf,
    /// The `config` table as JSON (what the plugin's `init` receives); `{}` when absent.
    pub config_json: String,
    /// Fuel (roughly, wasm instructions) per `check` call; default 5,000,000 (a few ms).
    pub fuel: u64,
    /// Fuel for `init`: ten times `fuel`.
    pub init_fuel: u64,
    /// Linear-memory cap per instance; default 16 MiB (`memory_mb`).
    pub memory_bytes: usize,
    /// Cache decisions when the plugin declares itself deterministic (default true).
    pub cache: bool,
}

/// Reads only the `[[plugins]]` entries of a config file (plugin hot reload re-reads them
/// without revalidating the rest).
pub fn load_plugin_specs(path: &Path) -> Result<Vec<PluginSpec>, ConfigError> {
    #[derive(Deserialize)]
    struct OnlyPlugins {
        #[serde(default)]
        plugins: Vec<RawPlugin>,
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: OnlyPlugins =
        toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string().trim().into()))?;
    plugin_specs(raw.plugins, path.parent().unwrap_or(Path::new(".")))
}

pub(super) fn plugin_specs(
    raw: Vec<RawPlugin>,
    base: &Path,
) -> Result<Vec<PluginSpec>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        key: "plugins".into(),
        why,
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        if p.name.is_empty() || !seen.insert(p.name.clone()) {
            return Err(invalid(format!(
                "plugin name `{}` is empty or repeated",
                p.name
            )));
        }
        let fuel = p.fuel.unwrap_or(5_000_000);
        let memory_mb = p.memory_mb.unwrap_or(16);
        if fuel == 0 || memory_mb == 0 || memory_mb > 4096 {
            return Err(invalid(format!(
                "plugin `{}`: fuel must be positive and memory_mb within 1..=4096",
                p.name
            )));
        }
        let config_json = serde_json::to_string(&p.config.unwrap_or_default())
            .map_err(|e| invalid(format!("plugin `{}`: config: {e}", p.name)))?;
        out.push(PluginSpec {
            path: base.join(&p.path),
            name: p.name,
            config_json,
            fuel,
            init_fuel: fuel.saturating_mul(10),
            memory_bytes: (memory_mb as usize) << 20,
            cache: p.cache.unwrap_or(true),
        });
    }
    Ok(out)
}
