//! The seam between the session and the SQL layer: every client `Query` and `Parse` passes
//! through [`Session::route_sql`]. Admin logins pass through (logged by fingerprint); tenant
//! and switcher logins get the rewriter's confined SQL for their org, or a refusal.

use std::sync::Arc;

use super::error::SessionError;
use super::shared::Sharing;
use super::{ClientIo, Session, Statement};
use crate::boundary::unix_now;
use crate::config::{PoolMode, Role};
use crate::errors::{code, ClientError};
use crate::plan::Plan;
use crate::sql::rewrite::Template;
use crate::sql::{self, SessionEffect};

/// What `route_sql` decided for one SQL string.
pub(super) struct Routed {
    /// Replacement SQL, or `None` to send the client's text unchanged.
    pub sql: Option<String>,
    /// Its `SET`s and `RESET`s, in order (pinning effects only in session pooling).
    pub effects: Vec<SessionEffect>,
    /// For rewritten statements: the org it was rendered for and the template.
    pub tenant: Option<Rendered>,
    /// A policy plugin rewrote (masked) the client's text, so `tenant`'s template is not the
    /// rewrite of the client's own SQL.
    pub masked: bool,
    /// How it may use a multiplexed connection.
    pub sharing: Sharing,
    /// The plan of the client's text (`None` for pass-through without policy plugins, which
    /// needs only the lexical summary, and when a prepared statement was rendered again for
    /// another tenant from its template alone).
    pub plan: Option<Arc<Plan>>,
}

/// A statement rendered for one tenant.
#[derive(Debug, Clone)]
pub(super) struct Rendered {
    pub org: String,
    pub template: Arc<Template>,
    /// The client's text, for switcher logins: routed again (policy included) when the
    /// session's tenant changes before the statement runs.
    pub client_text: Option<Arc<str>>,
}

impl<S: ClientIo> Session<'_, S> {
    /// The single function every client SQL string passes through before PostgreSQL. Each
    /// statement is logged by fingerprint (DEBUG; admin statements at INFO with
    /// `audit_admin_statements`), each refusal at INFO with its SQLSTATE — never the text or
    /// the refusal's message, which may quote the statement's literals.
    pub(super) async fn route_sql(&self, text: &str) -> Result<Routed, ClientError> {
        // (The macros compute the fingerprint only when the line is written.)
        let fingerprint = || Fingerprint(sql::fingerprint(text));
        let role = self.principal.role.as_str();
        let routed = self.route_sql_unlogged(text).await;
        let refused = routed.as_ref().err().map(|e| e.code);
        let org = self.current_org_str();
        self.state.metrics.statement(role, org, refused);
        self.state.registry.statement(self.cancel.pid, org);
        let audit =
            self.principal.role == Role::Admin && self.state.current().audit_admin_statements;
        match &routed {
            Err(e) => {
                tracing::info!(code = e.code, fingerprint = %fingerprint(), role, "statement refused")
            }
            Ok(_) if audit => tracing::info!(fingerprint = %fingerprint(), role, "statement"),
            Ok(r) => {
                tracing::debug!(fingerprint = %fingerprint(), role, rewritten = r.tenant.is_some(), "statement")
            }
        }
        routed
    }

    async fn route_sql_unlogged(&self, text: &str) -> Result<Routed, ClientError> {
        let max = self.state.current().tenancy.max_statement_bytes;
        if self.principal.role != Role::Admin && text.len() > max {
            return Err(SessionError::TooLong {
                len: text.len(),
                max,
            }
            .into());
        }
        // (`tenancy.rewrite` is off only in tests that show the second wall holds alone.)
        let passes = self.principal.role == Role::Admin || !self.state.config.tenancy.rewrite;
        let plugins = !self.state.policy.is_empty();
        if passes && !plugins {
            // Pass-through needs only the lexical summary: no plan is made (a plan would cost
            // a second tokenizer pass for every new literal).
            let summary = match self.batch_plan(text) {
                Some(p) => p.lexical().clone(),
                None => sql::summarize(text),
            };
            return self.passed(summary, None, None);
        }
        let plan = match self.batch_plan(text) {
            Some(p) => p.clone(),
            None => self.state.planner.plan(text),
        };
        // Policy plugins see the statement after tenant binding; a mask rewrites the text.
        let started = std::time::Instant::now();
        let decision = self.state.policy.check(
            &crate::policy::Who {
                user: &self.principal.user,
                org_id: self.current_org().as_deref(),
                role: self.principal.role,
            },
            text,
            || plan.analysis(),
        );
        if plugins {
            let kind = match &decision {
                Ok(None) => "allow",
                Ok(Some(_)) => "mask",
                Err(_) => "deny",
            };
            let seconds = started.elapsed().as_secs_f64();
            self.state.metrics.plugin_decision(kind, seconds);
        }
        let masked = decision?;
        // A masked statement runs the masked text's plan.
        let runs = match &masked {
            Some(m) => self.state.planner.plan(m),
            None => plan.clone(),
        };
        if passes {
            return self.passed(runs.lexical().clone(), masked, Some(plan));
        }
        let catalog = self
            .state
            .catalog()
            .await
            .map_err(|e| ClientError::from(&e))?;
        // Policy first: a tenant is told "not allowed" before "not poolable".
        let template = self.state.planner.rewrite(&runs, &catalog)?;
        // What the pooler tracks comes from the parse that produced the SQL PostgreSQL runs.
        // The multiplexing decision was taken earlier, from a lexical reading of the waiting
        // batch: if that reading let this statement share a connection and the parse does
        // not, the two readings differ, and the statement is refused.
        let summary = template.summary().clone();
        if self.batch_plans.iter().any(|p| Arc::ptr_eq(p, &runs)) {
            let lexical = runs.lexical();
            if lexical.batchable && !summary.batchable
                || lexical.read_only && !summary.read_only
                || lexical.statements != summary.statements
            {
                return Err(SessionError::ReadsDifferently.into());
            }
        }
        let (effects, sharing) = self.pooling_effects(summary)?;
        let Some(org) = self.current_org() else {
            if touches_tenant_data(&template) {
                return Err(self.unbound());
            }
            return Ok(Routed {
                sql: Some(template.render("")),
                effects,
                tenant: None,
                masked: masked.is_some(),
                sharing,
                plan: Some(plan),
            });
        };
        let sql = template.render_checked(&org)?;
        Ok(Routed {
            sql: Some(sql),
            effects,
            tenant: Some(Rendered {
                org,
                template,
                client_text: (self.principal.role == Role::Switcher).then(|| Arc::from(text)),
            }),
            masked: masked.is_some(),
            sharing,
            plan: Some(plan),
        })
    }

    /// Session-level effects the pooler must know about, and how the statement may share a
    /// connection; refuses what cannot be pooled.
    fn pooling_effects(
        &self,
        summary: sql::Summary,
    ) -> Result<(Vec<SessionEffect>, Sharing), ClientError> {
        let sharing = Sharing::of(&summary);
        if self.mode == PoolMode::Transaction {
            if let Some(SessionEffect::Pinned(what)) = summary
                .effects
                .iter()
                .find(|e| matches!(e, SessionEffect::Pinned(_)))
            {
                return Err(SessionError::NeedsSessionPooling(what).into());
            }
        }
        Ok((summary.effects, sharing))
    }

    /// The batch check's plan of `text`, when it planned this text (`shared.rs`).
    fn batch_plan(&self, text: &str) -> Option<&Arc<Plan>> {
        self.batch_plans.iter().find(|p| p.text() == text)
    }

    /// A statement sent as the client wrote it (or as a policy plugin masked it), with what
    /// the pooler must track of it.
    fn passed(
        &self,
        summary: sql::Summary,
        masked: Option<String>,
        plan: Option<Arc<Plan>>,
    ) -> Result<Routed, ClientError> {
        let (effects, sharing) = self.pooling_effects(summary)?;
        Ok(Routed {
            masked: masked.is_some(),
            sql: masked,
            effects,
            tenant: None,
            sharing,
            plan,
        })
    }

    /// The org this session's statements run as now.
    pub(super) fn current_org(&self) -> Option<String> {
        self.current_org_str().map(str::to_string)
    }

    /// [`current_org`](Self::current_org), borrowed.
    pub(super) fn current_org_str(&self) -> Option<&str> {
        match self.principal.role {
            Role::Tenant => Some(&self.principal.org_id),
            // A binding made with a token ends when the token expires.
            Role::Switcher => self
                .settings
                .tenant()
                .filter(|b| b.expires.is_none() || b.live(unix_now()))
                .map(|b| b.org.as_str()),
            Role::Admin => None,
        }
    }

    /// The refusal of a statement that needs a tenant when none is bound (or its token expired).
    fn unbound(&self) -> ClientError {
        match self.settings.tenant() {
            Some(_) => SessionError::TokenExpired.into(),
            None => SessionError::NoTenant.into(),
        }
    }

    /// For a switcher whose tenant changed since the statement was prepared, renders it again
    /// for the current tenant (a different server-side statement).
    pub(super) async fn for_current_tenant(
        &self,
        stmt: Arc<Statement>,
    ) -> Result<Arc<Statement>, ClientError> {
        let Some(rendered) = &stmt.tenant else {
            return Ok(stmt);
        };
        let org = self.current_org().ok_or_else(|| self.unbound())?;
        if org == rendered.org {
            return Ok(stmt);
        }
        // Policy plugins decided for the old tenant: the client's text goes through the whole
        // seam again (policy, rewrite, render) for the new one.
        let routed = match &rendered.client_text {
            Some(text) => self.route_sql(text).await?,
            None => Routed {
                sql: Some(rendered.template.render_checked(&org)?),
                effects: stmt.effect.iter().cloned().collect(),
                tenant: Some(Rendered {
                    org,
                    template: rendered.template.clone(),
                    client_text: None,
                }),
                masked: true,
                sharing: stmt.sharing,
                plan: None,
            },
        };
        let sql = routed.sql.unwrap_or_else(|| stmt.sql.clone());
        Ok(Arc::new(Statement::new(
            sql,
            stmt.types.clone(),
            routed.effects.into_iter().last(),
            routed.tenant,
            routed.sharing,
        )))
    }

    /// Makes statement `name` one routed for the current tenant — routed again, policy
    /// plugins included, when a switcher changed tenant since its Parse — as a forwarded Bind
    /// does (the balance cache calls this before answering one). False when that refuses it
    /// (the forwarded path then routes it again and reports the refusal).
    pub(super) async fn routed_for_current_tenant(&mut self, name: &str) -> bool {
        let Some(stmt) = self.statements.get(name).cloned() else {
            return false;
        };
        let current = self.current_org_str();
        if current.is_some() && stmt.tenant.as_ref().map(|r| r.org.as_str()) == current {
            return true;
        }
        match self.for_current_tenant(stmt.clone()).await {
            Ok(routed) => {
                if !Arc::ptr_eq(&routed, &stmt) {
                    self.statements.insert(name.to_string(), routed);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Refuses to execute `portal`, bound for tenant `bound`, when that is not the current one
    /// (a switcher that changed tenant between its Bind and Execute): its rows, or its
    /// plugins' decision, were for that tenant.
    pub(super) fn portal_tenant_check(
        &self,
        portal: &str,
        bound: Option<&str>,
    ) -> Result<(), ClientError> {
        if bound.is_none() || bound == self.current_org_str() {
            return Ok(());
        }
        tracing::info!(
            code = code::INSUFFICIENT_PRIVILEGE,
            "execute refused: portal bound for another tenant"
        );
        Err(SessionError::PortalOfAnotherTenant(portal.to_string()).into())
    }

    /// Refuses a Bind whose tenant-column parameters are not the session's tenant.
    pub(super) fn check_tenant_params(
        &self,
        stmt: &Statement,
        params: &[Option<&[u8]>],
    ) -> Result<(), ClientError> {
        let Some(rendered) = &stmt.tenant else {
            return Ok(());
        };
        for &n in rendered.template.param_checks() {
            let ok = params
                .get(n - 1)
                .copied()
                .flatten()
                .is_some_and(|v| v == rendered.org.as_bytes());
            if !ok {
                // Its number, never its value.
                tracing::info!(
                    code = code::INSUFFICIENT_PRIVILEGE,
                    parameter = n,
                    "bind refused: a parameter supplies another tenant"
                );
                return Err(SessionError::TenantParameter(n).into());
            }
        }
        Ok(())
    }
}

/// Whether the template has any place where the tenant goes (a statement with none, such as
/// `SELECT 1` or `BEGIN`, needs no tenant).
fn touches_tenant_data(t: &Template) -> bool {
    !t.param_checks().is_empty() || !t.literal_checks().is_empty() || t.render("a") != t.render("b")
}

/// A statement's fingerprint as logs show it (16 hex digits).
struct Fingerprint(u64);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
