#!/usr/bin/env python3
"""Classifies every built-in function of a PostgreSQL 15 server (pg_proc in pg_catalog and
information_schema) for tenants, and writes proxy/src/sql/rewrite/pg_functions.rs.

Usage: tools/classify_functions.py [psql connection options...]   (e.g. -h /tmp -p 5432 -U postgres)

A function name is classified by its most dangerous overload, first matching rule wins:
  runs_sql       it runs SQL text it is given (query_to_xml, ts_stat, ...)
  server         it reaches the server's files, processes or other sessions, or changes server
                 state (EXECUTE not granted to PUBLIC, large objects, WAL, replication, signals,
                 session-level advisory locks, LISTEN/NOTIFY, the backend's address and pid)
  other_tenants  it exposes data of every tenant (statistics counters, relation sizes, other
                 transactions' status, sequence state, what other clients prepared on a pooled
                 server connection, all settings unfiltered)
  confined       allowed only in the form Orgwall checks or rewrites (rewrite/calls.rs,
                 set_config in statements.rs)
  safe           everything else: pure functions, catalog lookups of the shared schema,
                 type I/O and support functions (those taking `internal` cannot be called)
The output is reviewed in version control: a change of PostgreSQL (new or removed functions)
fails tests/function_classes.rs until this is run again and the diff reviewed.
"""
import re
import subprocess
import sys

QUERY = r"""
SELECT n.nspname, p.proname,
       bool_or(p.proacl IS NOT NULL AND NOT (p.proacl::text ~ '(^|[{,])=X')) AS restricted
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('pg_catalog', 'information_schema')
GROUP BY 1, 2 ORDER BY 1, 2
"""

RUNS_SQL = {
    "query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema",
    "cursor_to_xml", "cursor_to_xmlschema",
    "table_to_xml", "table_to_xml_and_xmlschema", "table_to_xmlschema",
    "schema_to_xml", "schema_to_xml_and_xmlschema", "schema_to_xmlschema",
    "database_to_xml", "database_to_xml_and_xmlschema", "database_to_xmlschema",
    "ts_stat", "ts_rewrite",
}

CONFINED = {
    "nextval": "only on a protected table's own sequence, named by a literal (calls.rs)",
    "currval": "only on a protected table's own sequence, named by a literal (calls.rs)",
    "current_setting": "literal names outside orgwall.* only (calls.rs)",
    "set_config": "only as SET would be allowed, as a select-list item (statements.rs)",
    "pg_advisory_xact_lock": "keys put in the tenant's own key space (calls.rs)",
    "pg_advisory_xact_lock_shared": "keys put in the tenant's own key space (calls.rs)",
    "pg_try_advisory_xact_lock": "keys put in the tenant's own key space (calls.rs)",
    "pg_try_advisory_xact_lock_shared": "keys put in the tenant's own key space (calls.rs)",
}

# Names a prefix rule below would catch, that are safe: with the reason.
SAFE_EXCEPTIONS = {
    "pg_advisory_unlock_all": "releases only the server session's session-level locks, which tenants cannot take (asyncpg's pool reset)",
}

SERVER_PREFIXES = [
    ("pg_read_", "reads server files"),
    ("pg_ls_", "lists server directories"),
    ("pg_stat_file", "reads server file metadata"),
    ("lo_", "large objects are shared by all tenants and reach server files"),
    ("loread", "large objects are shared by all tenants"),
    ("lowrite", "large objects are shared by all tenants"),
    ("pg_file_", "writes server files"),
    ("pg_terminate_backend", "signals other sessions"),
    ("pg_cancel_backend", "signals other sessions"),
    ("pg_signal_backend", "signals other sessions"),
    ("pg_log_backend_memory_contexts", "signals other sessions"),
    ("pg_reload_conf", "server configuration"),
    ("pg_rotate_logfile", "server log files"),
    ("pg_current_logfile", "server log files"),
    ("pg_promote", "server state"),
    ("pg_switch_wal", "server state"),
    ("pg_wal_", "WAL of every tenant"),
    ("pg_walfile_", "WAL files"),
    ("pg_current_wal_", "WAL positions of every tenant's writes"),
    ("pg_last_wal_", "WAL positions"),
    ("pg_last_xact_replay", "replication state"),
    ("pg_get_wal_", "WAL state"),
    ("pg_is_wal_replay", "replication state"),
    ("pg_backup_", "server backups"),
    ("pg_create_", "server objects (slots, restore points)"),
    ("pg_copy_", "replication slots"),
    ("pg_drop_replication_slot", "replication slots"),
    ("pg_replication_", "replication state"),
    ("pg_logical_", "logical decoding of every tenant's changes"),
    ("pg_get_replication_slots", "replication slots"),
    ("pg_notify", "NOTIFY channels are shared by all tenants"),
    ("pg_listening_channels", "LISTEN state of the pooled server session"),
    ("pg_notification_queue_usage", "NOTIFY state of the server"),
    ("pg_advisory_lock", "session-level locks outlive the transaction on a pooled connection"),
    ("pg_advisory_unlock", "session-level locks"),
    ("pg_try_advisory_lock", "session-level locks outlive the transaction on a pooled connection"),
    ("pg_backend_pid", "the pooled server session's pid"),
    ("pg_blocking_pids", "other sessions"),
    ("pg_safe_snapshot_blocking_pids", "other sessions"),
    ("pg_isolation_test_session_is_blocked", "other sessions"),
    ("pg_export_snapshot", "snapshots shared with other sessions"),
    ("pg_import_system_collations", "changes the catalog"),
    ("pg_extension_config_dump", "changes the catalog"),
    ("pg_available_extension", "reads server files"),
    ("pg_extension_update_paths", "reads server files"),
    ("pg_control_", "server control file"),
    ("pg_config", "server build paths"),
    ("pg_hba_file_rules", "server configuration files"),
    ("pg_ident_file_mappings", "server configuration files"),
    ("pg_show_all_file_settings", "server configuration files"),
    ("pg_get_backend_memory_contexts", "server memory"),
    ("pg_get_shmem_allocations", "server memory"),
    ("pg_tablespace_location", "server file paths"),
    ("pg_relation_filenode", "server file paths"),
    ("pg_relation_filepath", "server file paths"),
    ("pg_filenode_relation", "server file paths"),
    ("pg_stat_reset", "resets server statistics"),
    ("pg_stat_clear_snapshot", "server statistics"),
    ("pg_stat_force_next_flush", "server statistics"),
    ("pg_stop_making_pinned_objects", "changes the catalog"),
    ("pg_nextoid", "changes the catalog"),
    ("binary_upgrade_", "changes the catalog"),
    ("brin_summarize_", "changes indexes"),
    ("brin_desummarize_range", "changes indexes"),
    ("gin_clean_pending_list", "changes indexes"),
    ("inet_client_", "the proxy's network address"),
    ("inet_server_", "the server's network address"),
    ("setseed", "seeds random() for every client of the pooled server session"),
]

OTHER_TENANTS = [
    ("pg_stat_get_", "statistics counters cover every tenant's rows and sessions"),
    ("pg_stat_have_stats", "statistics of every tenant"),
    ("pg_database_size", "sizes count every tenant's data"),
    ("pg_relation_size", "sizes count every tenant's data"),
    ("pg_table_size", "sizes count every tenant's data"),
    ("pg_total_relation_size", "sizes count every tenant's data"),
    ("pg_indexes_size", "sizes count every tenant's data"),
    ("pg_tablespace_size", "sizes count every tenant's data"),
    ("pg_sequence_last_value", "sequence state moved by every tenant"),
    ("setval", "sequence state shared by every tenant"),
    ("lastval", "on a pooled server session, another tenant's last sequence value"),
    ("pg_mcv_list_items", "column statistics hold every tenant's values"),
    ("pg_show_all_settings", "every setting, the server connection's tenant token included"),
    ("pg_prepared_statement", "statements other tenants prepared on the pooled server session"),
    ("pg_cursor", "cursors of the pooled server session"),
    ("pg_prepared_xact", "other sessions' prepared transactions"),
    ("pg_lock_status", "other sessions' locks"),
    ("pg_get_multixact_members", "other transactions' row locks"),
    ("txid_status", "other transactions' fate"),
    ("pg_xact_status", "other transactions' fate"),
    ("pg_xact_commit_timestamp", "other transactions' commit times"),
    ("pg_last_committed_xact", "other transactions"),
    ("pg_current_snapshot", "other sessions' transactions in progress"),
    ("txid_current_snapshot", "other sessions' transactions in progress"),
]


def classify(schema, name, restricted):
    if restricted:
        return "server", "EXECUTE is not granted to PUBLIC"
    if name in RUNS_SQL:
        return "runs_sql", "runs SQL text it is given"
    if name in CONFINED:
        return "confined", CONFINED[name]
    if name in SAFE_EXCEPTIONS:
        return "safe", SAFE_EXCEPTIONS[name]
    for prefix, why in SERVER_PREFIXES:
        if name.startswith(prefix):
            return "server", why
    for prefix, why in OTHER_TENANTS:
        if name.startswith(prefix):
            return "other_tenants", why
    return "safe", ""


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    out = subprocess.run(["psql", "-X", "-At", "-F", "\t", *sys.argv[1:], "-c", QUERY],
                         check=True, capture_output=True, text=True).stdout
    version = subprocess.run(["psql", "-X", "-At", *sys.argv[1:], "-c", "SHOW server_version_num"],
                             check=True, capture_output=True, text=True).stdout.strip()
    if not version.startswith("15"):
        sys.exit(f"PostgreSQL 15 expected, server_version_num is {version}")
    rows = []
    for line in out.splitlines():
        schema, name, restricted = line.split("\t")
        key = name if schema == "pg_catalog" else f"{schema}.{name}"
        cls, why = classify(schema, name, restricted == "t")
        rows.append((key, cls, why))
    rows.sort()
    camel = {"safe": "Safe", "confined": "Confined", "runs_sql": "RunsSql", "server": "Server",
             "other_tenants": "OtherTenants"}
    lines = [
        "//! Every built-in function of PostgreSQL 15 (`pg_proc` in `pg_catalog` and",
        "//! `information_schema`, by name: a name is as dangerous as its worst overload), classified",
        "//! for tenants. GENERATED by `tools/classify_functions.py` from a PostgreSQL 15 server and",
        "//! reviewed in version control; `tests/function_classes.rs` fails when the running",
        "//! PostgreSQL's `pg_proc` has names this table lacks or lacks names it has. Data, not code:",
        "//! the file-length guideline does not apply. The tenant allow-list is derived from it",
        "//! (`functions.rs`).",
        "",
        "use super::functions::FunctionClass::{self, *};",
        "",
        "/// (name — `schema.name` outside `pg_catalog` —, class, why), sorted by name.",
        "#[rustfmt::skip]",
        "pub(crate) const PG15_FUNCTIONS: &[(&str, FunctionClass, &str)] = &[",
    ]
    for key, cls, why in rows:
        lines.append(f"    ({rust_str(key)}, {camel[cls]}, {rust_str(why)}),")
    lines.append("];")
    path = "proxy/src/sql/rewrite/pg_functions.rs"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    counts = {}
    for _, cls, _ in rows:
        counts[cls] = counts.get(cls, 0) + 1
    print(f"{path}: {len(rows)} names, {counts}")


if __name__ == "__main__":
    main()
