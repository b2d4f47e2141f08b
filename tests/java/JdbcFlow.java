// pgjdbc (the driver under Hibernate and Spring) with a HikariCP pool, as one tenant: prints
// one line per result. Arguments: user password host port dbname [libpq options]; run as a
// single source file (`java -cp … JdbcFlow.java …`) by tests/driver_matrix.rs, which compares
// the transcript through Orgwall with the one under row-level security.
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.io.StringWriter;
import java.sql.*;
import java.util.*;
import org.postgresql.PGConnection;

public class JdbcFlow {
    static void say(Object... what) {
        StringBuilder b = new StringBuilder();
        for (Object w : what) {
            if (b.length() > 0) b.append(" | ");
            b.append(String.valueOf(w));
        }
        System.out.println(b);
    }

    static List<String> rows(ResultSet rs) throws SQLException {
        List<String> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                Object o = rs.getObject(i);
                row.add(rs.getMetaData().getColumnTypeName(i) + ":" + (o == null ? "null" : o.getClass().getSimpleName() + "=" + o));
            }
            out.add(String.join(",", row));
        }
        return out;
    }

    public static void main(String[] a) throws Exception {
        HikariConfig cfg = new HikariConfig();
        cfg.setJdbcUrl("jdbc:postgresql://" + a[2] + ":" + a[3] + "/" + a[4]);
        cfg.setUsername(a[0]);
        cfg.setPassword(a[1]);
        cfg.addDataSourceProperty("sslmode", "disable");
        if (a.length > 5) cfg.addDataSourceProperty("options", a[5]);
        cfg.setMaximumPoolSize(2);
        try (HikariDataSource ds = new HikariDataSource(cfg)) {
            try (Connection c = ds.getConnection()) {
                DatabaseMetaData md = c.getMetaData();
                List<String> cols = new ArrayList<>();
                try (ResultSet rs = md.getColumns(null, "public", "items", null)) {
                    while (rs.next()) cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
                }
                say("columns", cols);
                List<String> pk = new ArrayList<>();
                try (ResultSet rs = md.getPrimaryKeys(null, "public", "items")) {
                    while (rs.next()) pk.add(rs.getString("COLUMN_NAME") + "@" + rs.getInt("KEY_SEQ"));
                }
                say("primary key", pk);
                List<String> idx = new ArrayList<>();
                try (ResultSet rs = md.getIndexInfo(null, "public", "users", true, false)) {
                    while (rs.next()) idx.add(rs.getString("INDEX_NAME") + ":" + rs.getString("COLUMN_NAME"));
                }
                Collections.sort(idx);
                say("unique indexes", idx);
                List<String> fk = new ArrayList<>();
                try (ResultSet rs = md.getImportedKeys(null, "public", "inventory_ledger")) {
                    while (rs.next()) fk.add(rs.getString("PKTABLE_NAME") + "." + rs.getString("PKCOLUMN_NAME") + "<-" + rs.getString("FKCOLUMN_NAME"));
                }
                Collections.sort(fk);
                say("imported keys", fk);
                if (cols.isEmpty() || pk.isEmpty() || idx.isEmpty() || fk.isEmpty()) {
                    throw new IllegalStateException("metadata came back empty: " + cols + pk + idx + fk);
                }
                List<String> schemas = new ArrayList<>();
                try (ResultSet rs = md.getSchemas()) {
                    while (rs.next()) schemas.add(rs.getString(1));
                }
                say("schemas", schemas);
                int types = 0;
                try (ResultSet rs = md.getTypeInfo()) {
                    while (rs.next()) types++;
                }
                say("type info rows > 0", types > 0);
                try (Statement s = c.createStatement();
                     ResultSet rs = s.executeQuery("SELECT id, payload, interval '1 day' AS d, inet '10.0.0.1' AS addr FROM audit_logs ORDER BY id")) {
                    say("jsonb interval inet", rows(rs));
                }
            }
            try (Connection c = ds.getConnection()) {
                try (PreparedStatement p = c.prepareStatement(
                        "INSERT INTO items (id, item_number, description) VALUES (?, ?, ?) RETURNING id, item_number, org_id")) {
                    p.setString(1, "i_jdbc1");
                    p.setString(2, "J-1");
                    p.setString(3, "Jdbc");
                    try (ResultSet rs = p.executeQuery()) { say("insert returning", rows(rs)); }
                }
                try (PreparedStatement p = c.prepareStatement("UPDATE items SET description = ? WHERE id = ? RETURNING id, description")) {
                    p.setString(1, "Jdbc 2");
                    p.setString(2, "i_jdbc1");
                    try (ResultSet rs = p.executeQuery()) { say("update returning", rows(rs)); }
                }
                try (Statement s = c.createStatement()) {
                    try (ResultSet rs = s.executeQuery("SELECT l.id, i.item_number FROM inventory_ledger l JOIN items i ON i.id = l.item_id ORDER BY l.id")) {
                        say("join", rows(rs));
                    }
                    try (ResultSet rs = s.executeQuery("SELECT item_id, sum(quantity_delta), count(*) FROM inventory_ledger GROUP BY item_id ORDER BY 1")) {
                        say("aggregate", rows(rs));
                    }
                }
                // pgjdbc switches to a named server-side statement after prepareThreshold (5) uses.
                List<String> got = new ArrayList<>();
                try (PreparedStatement p = c.prepareStatement("SELECT description FROM items WHERE id = ?")) {
                    for (String id : new String[] {"i_a1", "i_a2", "i_b1", "i_jdbc1", "i_a1", "i_b2", "i_a3", "i_a2"}) {
                        p.setString(1, id);
                        try (ResultSet rs = p.executeQuery()) { got.add(rs.next() ? String.valueOf(rs.getString(1)) : "none"); }
                    }
                }
                say("prepared x8", got);
                c.setAutoCommit(false);
                try (Statement s = c.createStatement()) {
                    s.executeUpdate("DELETE FROM items WHERE id = 'i_jdbc1'");
                    try (ResultSet rs = s.executeQuery("SELECT count(*) FROM items")) { say("deleted inside", rows(rs)); }
                }
                c.rollback();
                c.setAutoCommit(true);
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM items")) {
                    say("after rollback", rows(rs));
                }
                try (Statement s = c.createStatement()) {
                    s.executeUpdate("INSERT INTO users (id, email) VALUES ('u_jdbc', 'alice@shared.test')");
                } catch (SQLException e) {
                    say("unique violation", e.getSQLState());
                }
                StringWriter w = new StringWriter();
                long n = c.unwrap(PGConnection.class).getCopyAPI().copyOut("COPY (SELECT id, item_number FROM items ORDER BY id) TO STDOUT", w);
                say("copy out", n, w.toString().replace("\n", "\\n"));
                // COPY in through CopyManager; the reference (libpq options given), where
                // PostgreSQL refuses COPY FROM under row-level security, inserts the same rows.
                long copied;
                if (a.length > 5) {
                    try (PreparedStatement p = c.prepareStatement("INSERT INTO feature_flags (id, key) VALUES (?, ?)")) {
                        for (String[] f : new String[][] {{"ff_jdbc_c1", "jdbc_copy_1"}, {"ff_jdbc_c2", "jdbc_copy_2"}}) {
                            p.setString(1, f[0]);
                            p.setString(2, f[1]);
                            p.executeUpdate();
                        }
                    }
                    copied = 2;
                } else {
                    copied = c.unwrap(PGConnection.class).getCopyAPI().copyIn(
                        "COPY feature_flags (id, key) FROM STDIN (FORMAT csv)",
                        new java.io.StringReader("ff_jdbc_c1,jdbc_copy_1\nff_jdbc_c2,jdbc_copy_2\n"));
                }
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT id, key, org_id FROM feature_flags ORDER BY id")) {
                    say("copy in", copied, rows(rs));
                }
                try (PreparedStatement p = c.prepareStatement("DELETE FROM items WHERE id = ? RETURNING id")) {
                    p.setString(1, "i_jdbc1");
                    try (ResultSet rs = p.executeQuery()) { say("delete returning", rows(rs)); }
                }
            }
            List<String> checkouts = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                try (Connection c = ds.getConnection(); Statement s = c.createStatement();
                     ResultSet rs = s.executeQuery("SELECT count(*) + " + i + " FROM users")) {
                    rs.next();
                    checkouts.add(rs.getString(1));
                }
            }
            say("checkouts", checkouts);
        }
    }
}
