//! Guest SDK for Orgwall policy plugins: the WIT bindings (`orgwall:policy@0.1.0`), a
//! [`Policy`] trait that holds per-instance state built from the plugin's config, helpers on
//! statements and decisions, and the [`policy!`] macro that exports a type as the component.
//!
//! Plugins run without WASI capabilities: any call that reaches WASI (files, clock, random,
//! stdout) traps and refuses the statement. Use `BTreeMap`, not `HashMap::new()`.
//!
//! ```ignore
//! struct NoTruncate;
//! impl orgwall_policy::Policy for NoTruncate {
//!     fn new(_config: &orgwall_policy::Config) -> Result<Self, String> { Ok(NoTruncate) }
//!     fn check(&self, _who: &Principal, stmt: &Statement) -> Decision {
//!         if stmt.operation == Operation::Truncate { deny("42501", "no TRUNCATE") } else { Decision::Allow }
//!     }
//! }
//! orgwall_policy::policy!(NoTruncate);
//! ```

/// The generated bindings (in a module: the exported macro cannot live beside a `use` of it
/// at the crate root).
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "orgwall_policy::bindings",
    });
}

pub use bindings::orgwall::policy::types::{
    Access, Decision, Denial, Level, MaskedColumn, Operation, PluginInfo, Principal, Replacement,
    Role, Statement, TableRef,
};
pub use bindings::{log, Guest};

mod config;
pub use config::Config;

/// A policy: built once per instance from its config, then asked about every statement.
pub trait Policy: Sized + 'static {
    /// Builds the policy from the `config` table of its `[[plugins]]` entry.
    fn new(config: &Config) -> Result<Self, String>;

    /// Whether `check` depends only on the principal and the analysed statement (not on the
    /// literal SQL text or on state): Orgwall then caches decisions.
    fn deterministic(&self) -> bool {
        true
    }

    /// Decides on one statement.
    fn check(&self, who: &Principal, stmt: &Statement) -> Decision;
}

/// A denial with the given SQLSTATE and message.
pub fn deny(sqlstate: &str, message: impl Into<String>) -> Decision {
    Decision::Deny(Denial {
        sqlstate: sqlstate.into(),
        message: message.into(),
    })
}

/// Writes to Orgwall's log, tagged with the plugin's name.
pub fn log_info(message: &str) {
    log(Level::Info, message);
}

/// Writes a warning to Orgwall's log.
pub fn log_warn(message: &str) {
    log(Level::Warn, message);
}

impl Statement {
    /// Tables touched with `access`, by unqualified name.
    pub fn tables_with(&self, access: Access) -> impl Iterator<Item = &TableRef> {
        self.tables.iter().filter(move |t| t.access == access)
    }

    /// Whether the statement reads `table`.
    pub fn reads(&self, table: &str) -> bool {
        self.tables_with(Access::Read).any(|t| t.name == table)
    }

    /// Whether the statement writes `table`.
    pub fn writes(&self, table: &str) -> bool {
        self.tables_with(Access::Write).any(|t| t.name == table)
    }

    /// Whether the statement reads `column` of `table` (explicitly or through `*`).
    pub fn reads_column(&self, table: &str, column: &str) -> bool {
        self.tables_with(Access::Read)
            .filter(|t| t.name == table)
            .any(|t| t.columns.iter().any(|c| c == column || c == "*"))
    }
}

impl Role {
    /// The role's name as in orgwall.toml (`tenant`, `switcher`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tenant => "tenant",
            Role::Switcher => "switcher",
            Role::Admin => "admin",
        }
    }
}

/// Exports a [`Policy`] type as the plugin component.
#[macro_export]
macro_rules! policy {
    ($t:ty) => {
        struct __OrgwallPolicyExport;

        ::std::thread_local! {
            static __ORGWALL_POLICY: ::std::cell::RefCell<::std::option::Option<$t>> =
                const { ::std::cell::RefCell::new(None) };
        }

        impl $crate::Guest for __OrgwallPolicyExport {
            fn init(config: String) -> Result<$crate::PluginInfo, String> {
                let config = $crate::Config::parse(&config)?;
                let policy = <$t as $crate::Policy>::new(&config)?;
                let info = $crate::PluginInfo {
                    deterministic: $crate::Policy::deterministic(&policy),
                };
                __ORGWALL_POLICY.with(|p| *p.borrow_mut() = Some(policy));
                Ok(info)
            }

            fn check(who: $crate::Principal, stmt: $crate::Statement) -> $crate::Decision {
                __ORGWALL_POLICY.with(|p| match p.borrow().as_ref() {
                    Some(policy) => $crate::Policy::check(policy, &who, &stmt),
                    None => $crate::deny("42501", "plugin used before init"),
                })
            }
        }

        $crate::bindings::__export_policy_world!(__OrgwallPolicyExport with_types_in $crate::bindings);
    };
}
