//! `orgwall plugin check PLUGIN.wasm --sql … --user … [--org …] [--role …] [--config JSON]`:
//! runs one plugin on one statement without a database and reports the decision — the
//! security team's test loop. Exit status: 0 allow/mask, 2 deny (a plugin that traps denies),
//! 1 the plugin could not be loaded.

use std::path::PathBuf;

use super::{PolicyEngine, PolicyError, Slot, Who};
use crate::config::{PluginSpec, Role};
use crate::sql::analyze;

/// Arguments of `orgwall plugin check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// The statement to check.
    #[arg(long)]
    pub sql: String,
    /// Login name of the principal.
    #[arg(long, default_value = "app")]
    pub user: String,
    /// The org the statement runs as (omit for none).
    #[arg(long)]
    pub org: Option<String>,
    /// tenant | switcher | admin.
    #[arg(long, default_value = "tenant", value_parser = parse_role)]
    pub role: Role,
    /// The plugin's config as JSON (what `[[plugins]] config` would hold).
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Fuel per call.
    #[arg(long, default_value_t = 5_000_000)]
    pub fuel: u64,
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "tenant" => Ok(Role::Tenant),
        "switcher" => Ok(Role::Switcher),
        "admin" => Ok(Role::Admin),
        other => Err(format!(
            "unknown role `{other}` (tenant | switcher | admin)"
        )),
    }
}

/// Runs the check; returns the report to print and the exit status.
pub fn check(args: &CheckArgs) -> Result<(String, i32), PolicyError> {
    if serde_json::from_str::<serde_json::Value>(&args.config).is_err() {
        return Err(PolicyError::Load {
            plugin: args.plugin.display().to_string(),
            why: "--config is not valid JSON".into(),
        });
    }
    let spec = PluginSpec {
        name: args
            .plugin
            .file_stem()
            .map_or("plugin".into(), |s| s.to_string_lossy().into_owned()),
        path: args.plugin.clone(),
        config_json: args.config.clone(),
        fuel: args.fuel,
        init_fuel: args.fuel.saturating_mul(10),
        memory_bytes: 16 << 20,
        cache: false,
    };
    let engine = PolicyEngine::new(std::slice::from_ref(&spec))?;
    if let Some(Slot::Failed { why, .. }) = engine.current().slots.first() {
        return Err(PolicyError::Load {
            plugin: spec.name,
            why: why.clone(),
        });
    }
    let mut report = String::new();
    match analyze::analyze(&args.sql) {
        Ok(infos) => {
            for i in infos {
                let tables: Vec<String> = i
                    .tables
                    .iter()
                    .map(|t| format!("{:?}:{}({})", t.access, t.name, t.columns.join(",")))
                    .collect();
                report.push_str(&format!(
                    "statement: {:?} {}\n",
                    i.operation,
                    tables.join(" ")
                ));
            }
        }
        Err(e) => report.push_str(&format!("statement: {e}\n")),
    }
    let who = Who {
        user: &args.user,
        org_id: args.org.as_deref(),
        role: args.role,
    };
    let status = match engine.check(&who, &args.sql, || super::analyse(&args.sql)) {
        Ok(None) => {
            report.push_str("decision: allow\n");
            0
        }
        Ok(Some(sql)) => {
            report.push_str(&format!("decision: mask\nrewritten: {sql}\n"));
            0
        }
        Err(r) => {
            report.push_str(&format!("decision: deny {} {}\n", r.code, r.message));
            2
        }
    };
    Ok((report, status))
}
