//! Issue "Hostile clients on shared connections", cancels: a cancel request reaches only the
//! statement it was sent for. A tenant that cancels its own short statements in a tight loop
//! must never cancel another tenant's statement, whether server connections pass from client
//! to client between transactions (transaction pooling) or are shared by several clients at
//! once (multiplexing, with and without grouped reads).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orgwall_e2e::clients::describe;
use orgwall_e2e::proxy::Login;
use orgwall_e2e::rng::Rng;
use orgwall_e2e::tenancy::{admin_direct, tenancy_toml, tenant_db, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect, sqlstate, ProxyOptions, TestProxy};

/// Cancels the attacker sends (each one aimed at its own statement).
fn tries() -> u64 {
    std::env::var("CANCEL_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[derive(Debug, Default)]
struct Tally {
    /// The attacker's own statements that its cancel stopped, and that completed.
    attacker_cancelled: AtomicU64,
    attacker_done: AtomicU64,
    /// The other clients' statements: completed, and failed by a cancel (the victims).
    victim_done: AtomicU64,
    victims: AtomicU64,
}

/// One way to attack: the attacker (a client of tenant A) runs `sql` and cancels it after a
/// random delay below `max_delay_us`, `tries()` times, while `victims` run `victim_sql` back to
/// back on the same proxy.
struct Attack {
    sql: &'static str,
    max_delay_us: usize,
    victims: [Login; 4],
    victim_sql: &'static str,
}

async fn cancel_loop(proxy: &TestProxy, attack: &Attack) -> Arc<Tally> {
    let victim_sql = attack.victim_sql;
    let tally = Arc::new(Tally::default());
    // First, with nothing else running, one cancel that must take effect: the loop's own can
    // all miss on a loaded machine (the attacker's short statement is often over, or still
    // waiting for a connection, when its cancel arrives), and then it would prove nothing.
    let attacker = Arc::new(connect(&proxy.conn_str(TENANT_A)).await);
    let (token, c) = (attacker.cancel_token(), attacker.clone());
    let run = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel request sent");
    match run.await.expect("task") {
        Err(e) if sqlstate(&e).as_deref() == Some("57014") => {
            tally.attacker_cancelled.fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("a cancel with nothing else running did not take effect: {other:?}"),
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut victims = Vec::new();
    for login in attack.victims {
        let c = connect(&proxy.conn_str(login)).await;
        let (tally, stop) = (tally.clone(), stop.clone());
        victims.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.simple_query(victim_sql).await {
                    Ok(_) => tally.victim_done.fetch_add(1, Ordering::Relaxed),
                    Err(e) if sqlstate(&e).as_deref() == Some("57014") => {
                        tally.victims.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => panic!("another client's statement failed: {}", describe(&e)),
                };
            }
        }));
    }
    let mut rng = Rng::new(0x0ca_11ce1);
    for _ in 0..tries() {
        let token = attacker.cancel_token();
        let (c, sql) = (attacker.clone(), attack.sql);
        let run = tokio::spawn(async move { c.simple_query(sql).await });
        tokio::time::sleep(Duration::from_micros(rng.below(attack.max_delay_us) as u64)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel request sent");
        match run.await.expect("task") {
            Ok(_) => tally.attacker_done.fetch_add(1, Ordering::Relaxed),
            Err(e) if sqlstate(&e).as_deref() == Some("57014") => {
                tally.attacker_cancelled.fetch_add(1, Ordering::Relaxed)
            }
            Err(e) => panic!("the attacker's own statement failed: {}", describe(&e)),
        };
    }
    stop.store(true, Ordering::Relaxed);
    for v in victims {
        v.await.expect("victim task");
    }
    tally
}

/// Transactions rolled back in the database so far, as PostgreSQL's statistics say (a backend
/// reports when it exits, or when it has been idle for a while).
async fn rollbacks(direct: &tokio_postgres::Client) -> u64 {
    direct
        .simple_query("SELECT pg_stat_clear_snapshot()")
        .await
        .expect("clear snapshot");
    let row = direct
        .query_one(
            "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("pg_stat_database");
    row.get::<_, i64>(0) as u64
}

async fn no_victims(label: &str, opts: ProxyOptions, attack: Attack) {
    bounded(300, async {
        let db = tenant_db(label).await;
        // Both tenants may hold both connections, so they pass from one tenant to the other.
        let toml = tenancy_toml().replacen(
            "[tenancy]\n",
            "[tenancy]\nmax_server_connections_per_org = 2\nmax_server_connections_per_user = 2\n",
            1,
        );
        let proxy = TestProxy::start_with_extra(&db, opts, &toml).await;
        let direct = admin_direct(&db).await;
        let before = rollbacks(&direct).await;
        let t = cancel_loop(&proxy, &attack).await;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Every statement a cancel failed rolled back its transaction, including any that
        // Orgwall hid from its client and ran again: PostgreSQL's count must match what the
        // clients saw.
        let seen = n(&t.attacker_cancelled) + n(&t.victims);
        // Backends report their statistics when they exit: close every server connection.
        proxy.shutdown().await.expect("proxy shutdown");
        for _ in 0..100 {
            if rollbacks(&direct).await - before >= seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let failed = rollbacks(&direct).await - before;
        eprintln!(
            "{label}: attacker cancelled {} / completed {}; other clients completed {}, cancelled {}; transactions PostgreSQL rolled back: {failed}",
            n(&t.attacker_cancelled),
            n(&t.attacker_done),
            n(&t.victim_done),
            n(&t.victims),
        );
        assert!(
            n(&t.attacker_cancelled) > 0,
            "no cancel took effect: the test proves nothing"
        );
        assert!(n(&t.victim_done) > 0, "the other clients never ran");
        assert_eq!(n(&t.victims), 0, "other clients' statements were cancelled");
        assert_eq!(failed, seen, "statements failed that no client was told of (run again)");
    })
    .await;
}

/// Transaction pooling: the attacker's server connection goes back to the pool after each
/// statement and the other tenant's next statement may run on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_never_reach_the_next_client_of_a_pooled_connection() {
    // Tenant B's four clients wait for the two connections: the attacker's goes to one of
    // them as soon as its statement is answered, while its cancel may still be on the way.
    let attack = Attack {
        sql: "SELECT pg_sleep(0.001)",
        max_delay_us: 2000,
        victims: [TENANT_B; 4],
        victim_sql: "SELECT pg_sleep(0.05)",
    };
    no_victims(
        "cancel_pooled",
        ProxyOptions::pool(2, "transaction"),
        attack,
    )
    .await;
}

/// Multiplexing: several clients' statements share one server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_never_reach_another_client_on_a_multiplexed_connection() {
    let opts = ProxyOptions {
        multiplex: 2,
        ..ProxyOptions::pool(3, "transaction")
    };
    // A multiplexed connection carries one tenant's statements: the victims that can share
    // the attacker's are its own tenant's other clients. Theirs are short enough that the
    // connection keeps taking batches (see `upstream::mux`).
    let attack = Attack {
        sql: "SELECT pg_sleep(0.01)",
        max_delay_us: 12000,
        victims: [TENANT_A, TENANT_A, TENANT_B, TENANT_B],
        victim_sql: "SELECT pg_sleep(0.005)",
    };
    no_victims("cancel_mux", opts, attack).await;
}
