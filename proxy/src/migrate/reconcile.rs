//! The guide's reconciliation job: `inventory_balances` against `SUM(quantity_delta)` of the
//! ledger per (org_id, item_id, location_id, lot_id), NULL lots being one key.
//!
//! A key drifts when its balance differs from the ledger sum, when ledger rows have no balance
//! row, or when a balance row without ledger rows is not zero. Quantities travel as text so no
//! decimal type is needed on this side.

use tokio_postgres::{Client, GenericClient};

use super::MigrateError;

/// One key whose balance is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub org_id: String,
    pub item_id: String,
    pub location_id: String,
    pub lot_id: Option<String>,
    /// `SUM(quantity_delta)`, 0 when the key has no ledger rows.
    pub ledger: String,
    /// The balance row's quantity; `None` when the row is missing.
    pub balance: Option<String>,
}

/// GROUP BY treats NULL lots as equal, which is the IS NOT DISTINCT FROM the key needs
/// (a FULL JOIN on IS NOT DISTINCT FROM is not supported by PostgreSQL).
const DRIFT_SQL: &str = "
    SELECT org_id, item_id, location_id, lot_id,
           coalesce(sum(delta), 0) AS ledger, sum(quantity) AS balance
    FROM (SELECT org_id, item_id, location_id, lot_id, quantity_delta AS delta, NULL::numeric AS quantity
          FROM inventory_ledger
          UNION ALL
          SELECT org_id, item_id, location_id, lot_id, NULL, quantity FROM inventory_balances) k
    GROUP BY org_id, item_id, location_id, lot_id
    HAVING coalesce(sum(delta), 0) <> coalesce(sum(quantity), 0)
        OR (count(delta) > 0 AND count(quantity) = 0)";

/// Every drifting key, ordered.
pub async fn find_drift(client: &impl GenericClient) -> Result<Vec<Drift>, MigrateError> {
    let sql = format!(
        "SELECT org_id, item_id, location_id, lot_id, ledger::text, balance::text
         FROM ({DRIFT_SQL}) d ORDER BY 1, 2, 3, 4 NULLS FIRST"
    );
    let rows = client.query(&sql, &[]).await.map_err(MigrateError::sql(
        "comparing inventory_balances with the ledger",
    ))?;
    Ok(rows
        .iter()
        .map(|r| Drift {
            org_id: r.get(0),
            item_id: r.get(1),
            location_id: r.get(2),
            lot_id: r.get(3),
            ledger: r.get(4),
            balance: r.get(5),
        })
        .collect())
}

/// Sets every drifting balance to its ledger sum in one transaction, with ledger inserts held
/// off (SHARE lock) so the trigger cannot race the repair; returns the drift it repaired.
pub async fn fix(client: &mut Client) -> Result<Vec<Drift>, MigrateError> {
    let err = MigrateError::sql;
    let tx = client.transaction().await.map_err(err("BEGIN"))?;
    tx.batch_execute("LOCK TABLE inventory_ledger IN SHARE MODE")
        .await
        .map_err(err("locking inventory_ledger"))?;
    let drift = find_drift(&tx).await?;
    if !drift.is_empty() {
        let sql = format!(
            "INSERT INTO inventory_balances AS b
                 (org_id, item_id, location_id, lot_id, quantity, updated_at)
             SELECT org_id, item_id, location_id, lot_id, ledger, now() FROM ({DRIFT_SQL}) d
             ON CONFLICT (org_id, item_id, location_id, lot_id)
             DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = EXCLUDED.updated_at"
        );
        tx.execute(&sql, &[])
            .await
            .map_err(err("repairing inventory_balances"))?;
    }
    tx.commit().await.map_err(err("COMMIT"))?;
    Ok(drift)
}
