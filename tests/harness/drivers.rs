//! Apps in other languages as a tenant: a program (a Python script; a Node, Java, Ruby or Go
//! program) runs once through Orgwall as tenant A and once directly as a role that PostgreSQL's
//! row-level security confines to A, on a second copy of the data; the two transcripts must be
//! equal, B's rows byte-identical, and A's data the same in both databases afterwards.

use std::future::Future;

use crate::clients::CliOutput;
use crate::proxy::ProxyOptions;
use crate::tenancy::{admin_direct, org_checksums, setup_rls, tenant_db, tenant_proxy, TENANT_A};

/// Where a program connects.
pub struct Target {
    pub user: String,
    pub password: String,
    pub port: u16,
    pub dbname: String,
    /// libpq `options` (the RLS reference's `-c app.org_id=…`).
    pub options: Option<String>,
}

impl Target {
    /// The target as one libpq-style URL (which SQLAlchemy, asyncpg and node-postgres read).
    pub fn url(&self) -> String {
        let options = self
            .options
            .as_ref()
            .map(|o| format!("&options={}", o.replace(' ', "%20").replace('=', "%3D")))
            .unwrap_or_default();
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}?sslmode=disable{options}",
            self.user, self.password, self.port, self.dbname
        )
    }

    /// The target as separate arguments: user, password, host, port, dbname, then the
    /// options if any (for drivers that take no libpq URL).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            self.user.clone(),
            self.password.clone(),
            "127.0.0.1".into(),
            self.port.to_string(),
            self.dbname.clone(),
        ];
        a.extend(self.options.clone());
        a
    }
}

/// Runs `program` (given where to connect) through Orgwall as tenant A and directly under
/// row-level security, and compares; `label` names the two databases.
pub async fn same_as_row_level_security<F, Fut>(label: &str, what: &str, program: F)
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = CliOutput>,
{
    transcripts_match_row_level_security(label, what, |t| {
        let run = program(t);
        async move {
            let out = run.await;
            if out.status.success() {
                Ok(out.stdout)
            } else {
                Err(format!(
                    "{}:\n--- stdout\n{}\n--- stderr\n{}",
                    out.status, out.stdout, out.stderr
                ))
            }
        }
    })
    .await
}

/// [`same_as_row_level_security`] for an in-process program: its transcript, or why it failed.
pub async fn transcripts_match_row_level_security<F, Fut>(label: &str, what: &str, program: F)
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let reference = tenant_db(&format!("{label}_rls")).await;
    let role = setup_rls(&reference).await;
    let db = tenant_db(label).await;
    let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
    let admin = admin_direct(&db).await;
    let b_before = org_checksums(&admin, "org_b", false).await;

    let direct = program(Target {
        user: role.clone(),
        password: "rls-pw".into(),
        port: reference.server.port(),
        dbname: reference.name.clone(),
        options: Some("-c app.org_id=org_a".into()),
    })
    .await
    .unwrap_or_else(|e| panic!("{what} directly under RLS failed: {e}"));
    let proxied = program(Target {
        user: TENANT_A.name.into(),
        password: TENANT_A.password.into(),
        port: proxy.port,
        dbname: proxy.dbname.clone(),
        options: None,
    })
    .await
    .unwrap_or_else(|e| panic!("{what} through Orgwall failed: {e}"));
    assert!(direct.lines().count() > 8, "{direct}");
    assert_eq!(proxied, direct, "{what}");

    assert_eq!(org_checksums(&admin, "org_b", false).await, b_before);
    let reference_admin = admin_direct(&reference).await;
    assert_eq!(
        org_checksums(&admin, "org_a", true).await,
        org_checksums(&reference_admin, "org_a", true).await
    );
}
