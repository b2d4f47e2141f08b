// pgx v4 (the Go driver under most Go services) with a pgxpool pool, as one tenant: prints one
// line per result. os.Args[1] is a connection URL; tests/driver_matrix.rs builds this file in
// GOPATH mode against Debian's packages and compares the transcript through Orgwall with the
// one under row-level security. pgx prepares every statement with arguments under a name
// (`lrupsc_…`) and caches it per connection, sends a batch as one pipeline with one Sync, and
// bulk-loads with binary COPY FROM (`CopyFrom`).
package main

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
)

// The row-level-security reference (its URL sets app.org_id): PostgreSQL refuses COPY FROM
// there, so it inserts the same rows; through Orgwall the COPY itself must succeed.
var reference = strings.Contains(os.Args[1], "app.org_id")

var ctx = context.Background()

func say(what ...interface{}) {
	parts := make([]string, len(what))
	for i, w := range what {
		parts[i] = fmt.Sprint(w)
	}
	fmt.Println(strings.Join(parts, " | "))
}

// must stops the program on an error the flow does not expect.
func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

// sqlstate is the SQLSTATE and constraint of a server error (or says it was none).
func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code + " " + pgErr.ConstraintName
	}
	return fmt.Sprintf("no server error: %v", err)
}

// show renders one value with its Go type; times in UTC, pgtype values by their text form.
func show(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case time.Time:
		return "time.Time=" + x.UTC().Format(time.RFC3339Nano)
	case driver.Valuer:
		val, err := x.Value()
		must(err, "value")
		return fmt.Sprintf("%T=%v", v, val)
	default:
		return fmt.Sprintf("%T=%v", v, v)
	}
}

// rows renders a result: each row's values (rows.Values, pgx's own decoding) by [show].
func rows(r pgx.Rows, err error) []string {
	must(err, "query")
	defer r.Close()
	var out []string
	for r.Next() {
		vals, err := r.Values()
		must(err, "values")
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = show(v)
		}
		out = append(out, strings.Join(cells, ","))
	}
	must(r.Err(), "rows")
	return out
}

func main() {
	cfg, err := pgxpool.ParseConfig(os.Args[1])
	must(err, "config")
	cfg.MaxConns = 2
	pool, err := pgxpool.ConnectConfig(ctx, cfg)
	must(err, "connect")
	defer pool.Close()
	must(pool.Ping(ctx), "ping")
	say("ping", "ok")

	say("introspect", rows(pool.Query(ctx,
		"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
		"items")))
	var id, number, org string
	must(pool.QueryRow(ctx,
		"INSERT INTO items (id, item_number, description) VALUES ($1, $2, $3) RETURNING id, item_number, org_id",
		"i_go1", "G-1", "Go").Scan(&id, &number, &org), "insert")
	say("insert returning", id, number, org)
	tag, err := pool.Exec(ctx, "UPDATE items SET description = $1 WHERE id = $2", "Go 2", "i_go1")
	must(err, "update")
	say("exec", tag.String())
	say("join", rows(pool.Query(ctx,
		"SELECT l.id, i.item_number FROM inventory_ledger l JOIN items i ON i.id = l.item_id ORDER BY l.id")))
	say("aggregate", rows(pool.Query(ctx,
		"SELECT item_id, sum(quantity_delta), count(*) FROM inventory_ledger GROUP BY item_id ORDER BY 1")))
	say("jsonb interval inet", rows(pool.Query(ctx,
		"SELECT id, payload, interval '1 day 02:03:04' AS d, inet '10.0.0.1/8' AS addr FROM audit_logs ORDER BY id")))
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("", 2*3600))
	tag, err = pool.Exec(ctx, "UPDATE count_sheets SET completed_at = $1 WHERE status = $2", at, "closed")
	must(err, "timestamptz write")
	say("timestamptz", tag.String(), rows(pool.Query(ctx,
		"SELECT id, completed_at FROM count_sheets WHERE completed_at IS NOT NULL ORDER BY id")))
	say("array argument", rows(pool.Query(ctx,
		"SELECT id, item_number FROM items WHERE id = ANY($1) ORDER BY id", []string{"i_a1", "i_b1", "i_a3", "i_b4"})))
	payload := map[string]interface{}{"from": "pgx", "n": 3, "tags": []string{"a", "b"}}
	tag, err = pool.Exec(ctx, "INSERT INTO audit_logs (id, action, entity_id, payload) VALUES ($1, $2, $3, $4)",
		"aud_go1", "item.update", "i_go1", payload)
	must(err, "jsonb argument")
	say("jsonb argument", tag.String(), rows(pool.Query(ctx,
		"SELECT id, payload FROM audit_logs WHERE payload @> $1 OR payload ? $2 ORDER BY id",
		map[string]interface{}{"from": "pgx"}, "note")))
	say("upsert", rows(pool.Query(ctx,
		"INSERT INTO users (id, email, name) VALUES ($1, $2, $3) ON CONFLICT (org_id, email) DO UPDATE SET name = EXCLUDED.name RETURNING id, name, org_id",
		"u_go2", "alice@shared.test", "Alice (pgx)")))
	items := pgx.Identifier{"public", "items"}.Sanitize()
	say("identifier", items, rows(pool.Query(ctx, "SELECT count(*) FROM "+items+" WHERE active = $1", true)))

	checkouts(pool)
	describeMode(os.Args[1])

	c, err := pool.Acquire(ctx)
	must(err, "acquire")
	defer c.Release()
	cached(c)
	transactions(c)
	_, err = c.Exec(ctx, "INSERT INTO users (id, email) VALUES ($1, $2)", "u_go", "alice@shared.test")
	say("unique violation", sqlstate(err))
	batches(c)
	copies(c)
	say("delete returning", rows(c.Query(ctx, "DELETE FROM items WHERE id = $1 RETURNING id", "i_go1")))
}

// checkouts runs six queries from goroutines on a pool of two connections.
func checkouts(pool *pgxpool.Pool) {
	got := make([]int64, 6)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := pool.Acquire(ctx)
			must(err, "acquire")
			defer c.Release()
			must(c.QueryRow(ctx, "SELECT count(*) + $1 FROM users", int64(i)).Scan(&got[i]), "checkout")
		}(i)
	}
	wg.Wait()
	say("checkouts", got)
}

// text scans a row of one text column: "none" when there is no row, "null" for NULL.
func text(row pgx.Row, what string) string {
	var v *string
	err := row.Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "none"
	}
	must(err, what)
	if v == nil {
		return "null"
	}
	return *v
}

// cached uses one statement eight times on one connection (prepared once, from pgx's statement
// cache after that), once more over the simple protocol, and a statement prepared by name.
func cached(c *pgxpool.Conn) {
	const q = "SELECT description FROM items WHERE id = $1"
	var got []string
	before := c.Conn().StatementCache().Len()
	for _, id := range []string{"i_a1", "i_a2", "i_b1", "i_go1", "i_a1", "i_b2", "i_a3", "i_a2"} {
		got = append(got, text(c.QueryRow(ctx, q, id), "prepared"))
	}
	say("prepared x8", got, "statements cached", c.Conn().StatementCache().Len()-before)
	say("simple protocol", text(c.QueryRow(ctx, q, pgx.QuerySimpleProtocol(true), "i_go1"), "simple protocol"))
	_, err := c.Conn().Prepare(ctx, "item_by_number", "SELECT id FROM items WHERE item_number = $1")
	must(err, "prepare")
	got = nil
	for _, n := range []string{"W-100", "W-400", "G-1"} {
		got = append(got, text(c.QueryRow(ctx, "item_by_number", n), "named statement"))
	}
	say("named statement", got)
}

// describeMode is a second pool as pgx is set up behind PgBouncer: `statement_cache_mode=
// describe` caches only the description of each statement and runs it unnamed.
func describeMode(url string) {
	cfg, err := pgxpool.ParseConfig(url + "&statement_cache_mode=describe")
	must(err, "config")
	cfg.MaxConns = 1
	pool, err := pgxpool.ConnectConfig(ctx, cfg)
	must(err, "connect")
	defer pool.Close()
	var got []string
	for _, id := range []string{"i_a1", "i_b1", "i_go1", "i_b4", "i_a2", "i_a1"} {
		got = append(got, text(pool.QueryRow(ctx, "SELECT item_number FROM items WHERE id = $1", id), "describe mode"))
	}
	say("statement_cache_mode=describe", got)
}

// transactions: BeginTx, a delete rolled back; then a write committed at REPEATABLE READ.
func transactions(c *pgxpool.Conn) {
	count := func(q pgx.Row) int64 {
		var n int64
		must(q.Scan(&n), "count")
		return n
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	must(err, "begin")
	_, err = tx.Exec(ctx, "DELETE FROM items WHERE id = $1", "i_go1")
	must(err, "delete")
	say("deleted inside", count(tx.QueryRow(ctx, "SELECT count(*) FROM items")))
	must(tx.Rollback(ctx), "rollback")
	say("after rollback", count(c.QueryRow(ctx, "SELECT count(*) FROM items")))
	tx, err = c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	must(err, "begin")
	_, err = tx.Exec(ctx, "INSERT INTO locations (id, site, name) VALUES ($1, $2, $3)", "l_go1", "Go", "G-01")
	must(err, "insert location")
	_, err = tx.Exec(ctx, "UPDATE items SET unit_of_measure = $1 WHERE id = $2", "BOX", "i_go1")
	must(err, "update in transaction")
	must(tx.Commit(ctx), "commit")
	say("after commit", rows(c.Query(ctx,
		"SELECT l.id, l.org_id, i.unit_of_measure FROM locations l, items i WHERE l.id = $1 AND i.id = $2",
		"l_go1", "i_go1")))
}

// batches: one pipeline (Parse/Bind/Execute…, one Sync) of ordinary work; then one that also
// names another tenant: its rows stay out of reach, and the failing statement takes the whole
// batch (one implicit transaction) with it.
func batches(c *pgxpool.Conn) {
	b := &pgx.Batch{}
	b.Queue("INSERT INTO feature_flags (id, key, enabled) VALUES ($1, $2, $3)", "ff_go_b1", "go_batch_1", true)
	b.Queue("UPDATE items SET description = $1 WHERE id = $2", "from a batch", "i_b1")
	b.Queue("SELECT id, key, enabled, org_id FROM feature_flags ORDER BY id")
	r := c.SendBatch(ctx, b)
	tag, err := r.Exec()
	must(err, "batch insert")
	say("batch insert", tag.String())
	tag, err = r.Exec()
	must(err, "batch update")
	say("batch update of another tenant's item", tag.String())
	say("batch select", rows(r.Query()))
	must(r.Close(), "batch close")

	b = &pgx.Batch{}
	b.Queue("INSERT INTO feature_flags (id, key) VALUES ($1, $2)", "ff_go_b2", "go_batch_2")
	b.Queue("INSERT INTO feature_flags (id, key, org_id) VALUES ($1, $2, $3)", "ff_go_b3", "go_batch_3", "org_b")
	b.Queue("SELECT count(*) FROM feature_flags")
	r = c.SendBatch(ctx, b)
	tag, err = r.Exec()
	must(err, "hostile batch, first insert")
	say("hostile batch: insert", tag.String())
	_, err = r.Exec()
	say("hostile batch: other tenant's org_id", sqlstate(err))
	_, err = r.Exec()
	say("hostile batch: after the error", err != nil)
	r.Close()
	say("after the hostile batch", rows(c.Query(ctx, "SELECT id FROM feature_flags ORDER BY id")))
}

// copies: COPY out through pgconn, binary COPY in with CopyFrom (into feature_flags, and into
// the ledger, whose trigger moves balances), and a CopyFrom that names another tenant.
func copies(c *pgxpool.Conn) {
	var out bytes.Buffer
	tag, err := c.Conn().PgConn().CopyTo(ctx, &out, "COPY (SELECT id, item_number FROM items ORDER BY id) TO STDOUT")
	must(err, "copy out")
	say("copy out", tag.String(), strings.ReplaceAll(out.String(), "\n", `\n`))

	flags := [][]interface{}{
		{"ff_go_c1", "go_copy_1", true, "tab\there"},
		{"ff_go_c2", "go_copy_2", false, nil},
		{"ff_go_c3", "go_copy_3", true, "ünïcode"},
	}
	n, err := copyIn(c, pgx.Identifier{"public", "feature_flags"}, []string{"id", "key", "enabled", "description"}, flags)
	must(err, "copy in")
	say("copy in", n)
	say("copied in", rows(c.Query(ctx, "SELECT id, key, enabled, description, org_id FROM feature_flags WHERE id LIKE $1 ORDER BY id", "ff_go_c%")))
	ledger := [][]interface{}{
		{"led_go1", "i_a1", "l_a1", 2.5},
		{"led_go2", "i_a2", "l_a2", -4.0},
	}
	n, err = copyIn(c, pgx.Identifier{"inventory_ledger"}, []string{"id", "item_id", "location_id", "quantity_delta"}, ledger)
	must(err, "copy in ledger")
	say("copy in ledger", n)
	say("balances", rows(c.Query(ctx, "SELECT item_id, location_id, quantity FROM inventory_balances ORDER BY 1, 2")))

	// A bulk load past pgx's 64 KiB buffer (several CopyData messages) inside the client's
	// transaction: rolled back once, then committed.
	bulk := make([][]interface{}, 3000)
	for i := range bulk {
		bulk[i] = []interface{}{fmt.Sprintf("ff_go_bulk%04d", i), fmt.Sprintf("go_bulk_%04d_%s", i, strings.Repeat("x", 24)), i%3 == 0}
	}
	const bulkSum = "SELECT count(*), md5(string_agg(id || key || enabled::text || org_id, ',' ORDER BY id)) FROM feature_flags WHERE id LIKE 'ff_go_bulk%'"
	for _, commit := range []bool{false, true} {
		tx, err := c.Begin(ctx)
		must(err, "begin")
		n, err := copyIn(tx, pgx.Identifier{"feature_flags"}, []string{"id", "key", "enabled"}, bulk)
		must(err, "bulk copy in")
		inside := rows(tx.Query(ctx, bulkSum))
		if commit {
			must(tx.Commit(ctx), "commit")
		} else {
			must(tx.Rollback(ctx), "rollback")
		}
		say("bulk copy in a transaction", n, inside, "committed", commit, rows(c.Query(ctx, bulkSum)))
	}

	// The source fails after two rows: pgx sends CopyFail, the server answers 57014 and keeps
	// nothing; the connection goes on. (The reference has no COPY to abort: the source's error.)
	src := &failing{rows: [][]interface{}{{"ff_go_f1", "go_fail_1"}, {"ff_go_f2", "go_fail_2"}}}
	if reference {
		err = errSource
	} else {
		_, err = c.CopyFrom(ctx, pgx.Identifier{"feature_flags"}, []string{"id", "key"}, src)
		if strings.HasPrefix(sqlstate(err), "57014 ") && strings.Contains(err.Error(), errSource.Error()) {
			err = errSource
		}
	}
	say("copy in whose source fails", err == errSource, rows(c.Query(ctx, "SELECT count(*) FROM feature_flags WHERE id LIKE $1", "ff_go_f%")))

	// Another tenant's org_id in the stream: refused through Orgwall by the staging table's
	// CHECK (reported as 42501, constraint "orgwall: …") and under row-level security by the policy's
	// WITH CHECK (42501); each side prints whether it got its own refusal. Nothing is written.
	_, err = copyIn(c, pgx.Identifier{"feature_flags"}, []string{"id", "key", "org_id"}, [][]interface{}{{"ff_go_evil", "go_evil", "org_b"}})
	expected := "42501 orgwall: tenant column is not the session's tenant"
	if reference {
		expected = "42501 "
	}
	say("copy in with another tenant's org_id refused", sqlstate(err) == expected)
	// Another tenant's item in the ledger: the tenant-scoped foreign key refuses it.
	_, err = copyIn(c, pgx.Identifier{"inventory_ledger"}, []string{"id", "item_id", "location_id", "quantity_delta"}, [][]interface{}{{"led_go_evil", "i_b1", "l_b1", 1.0}})
	say("copy in of another tenant's item", sqlstate(err))
	say("after the hostile copies", rows(c.Query(ctx,
		"SELECT (SELECT count(*) FROM feature_flags), (SELECT count(*) FROM inventory_ledger)")))
}

var errSource = errors.New("the source broke")

// failing is a CopyFromSource that yields its rows, then fails.
type failing struct {
	rows [][]interface{}
	at   int
}

func (f *failing) Next() bool { f.at++; return f.at <= len(f.rows) }

func (f *failing) Values() ([]interface{}, error) { return f.rows[f.at-1], nil }

func (f *failing) Err() error {
	if f.at > len(f.rows) {
		return errSource
	}
	return nil
}

// copier is where a CopyFrom runs: a pooled connection, or a transaction on one.
type copier interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// copyIn is CopyFrom through Orgwall; the reference inserts the same rows as one batch in a
// transaction (a savepoint inside the client's), so that a refused row leaves nothing behind,
// as a refused COPY does.
func copyIn(c copier, table pgx.Identifier, columns []string, data [][]interface{}) (int64, error) {
	if !reference {
		return c.CopyFrom(ctx, table, columns, pgx.CopyFromRows(data))
	}
	marks := make([]string, len(columns))
	for i := range marks {
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table.Sanitize(), strings.Join(columns, ", "), strings.Join(marks, ", "))
	tx, err := c.Begin(ctx)
	must(err, "begin")
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	b := &pgx.Batch{}
	for _, row := range data {
		b.Queue(q, row...)
	}
	r := tx.SendBatch(ctx, b)
	for range data {
		if _, err := r.Exec(); err != nil {
			r.Close()
			return 0, err
		}
	}
	must(r.Close(), "batch close")
	return int64(len(data)), tx.Commit(ctx)
}
