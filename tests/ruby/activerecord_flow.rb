# ActiveRecord (Rails' ORM, over ruby-pg) as one tenant: prints one line per result.
# Arguments: user password host port dbname [libpq options]. tests/driver_matrix.rs compares
# the transcript through Orgwall with the one under row-level security. On connect
# ActiveRecord sends `SET standard_conforming_strings = on` and friends, loads its type map
# from pg_type, and reads primary keys with `current_schemas(false)`.
require "active_record"

user, password, host, port, dbname, options = ARGV
config = { adapter: "postgresql", host: host, port: port.to_i, username: user,
           password: password, database: dbname, pool: 2, sslmode: "disable" }
config[:options] = options if options
ActiveRecord::Base.establish_connection(config)
ActiveRecord::Base.logger = nil

class Item < ActiveRecord::Base; end
class User < ActiveRecord::Base; end
class InventoryLedger < ActiveRecord::Base
  self.table_name = "inventory_ledger"
end

def say(*what)
  puts what.map(&:inspect).join(" ")
end

say "columns", Item.column_names, Item.columns_hash["active"].type
say "primary key", Item.primary_key, InventoryLedger.primary_key
item = Item.create!(id: "i_ar1", item_number: "R-1", description: "Ruby")
say "created", item.id, Item.where(id: "i_ar1").pluck(:org_id)
say "returning", Item.connection.exec_query(
  "UPDATE items SET description = 'Ruby 2' WHERE id = 'i_ar1' RETURNING id, description, org_id").rows
item.update!(description: "Ruby 3")
say "updated", Item.find("i_ar1").description
say "join", InventoryLedger.joins("JOIN items ON items.id = inventory_ledger.item_id")
                           .order("inventory_ledger.id").pluck("inventory_ledger.id", "items.item_number")
say "aggregate", InventoryLedger.group(:item_id).order(:item_id).sum(:quantity_delta).transform_values(&:to_s)
say "prepared x7", %w[i_a1 i_a2 i_b1 i_ar1 i_a1 i_b2 i_a3].map { |id| Item.find_by(id: id)&.description || "none" }
ActiveRecord::Base.transaction do
  Item.where(id: "i_ar1").delete_all
  say "deleted inside", Item.count
  raise ActiveRecord::Rollback
end
say "after rollback", Item.count
begin
  User.create!(id: "u_ar", email: "alice@shared.test")
rescue ActiveRecord::RecordNotUnique => e
  say "unique violation", e.cause.result.error_field(PG::Result::PG_DIAG_SQLSTATE)
end
copied = +""
raw = Item.connection.raw_connection
raw.copy_data("COPY (SELECT id, item_number FROM items ORDER BY id) TO STDOUT") do
  while (row = raw.get_copy_data)
    copied << row
  end
end
say "copied", copied
# COPY in through the raw connection; the reference (libpq options given), where PostgreSQL
# refuses COPY FROM under row-level security, inserts the same rows.
flags = [%w[ff_ar_c1 ar_copy_1], %w[ff_ar_c2 ar_copy_2]]
if options
  flags.each { |id, key| raw.exec_params("INSERT INTO feature_flags (id, key) VALUES ($1, $2)", [id, key]) }
  say "copy in", flags.size
else
  res = raw.copy_data("COPY feature_flags (id, key) FROM STDIN") do
    flags.each { |id, key| raw.put_copy_data("#{id}\t#{key}\n") }
  end
  say "copy in", res.cmd_tuples
end
say "copied in", raw.exec("SELECT id, key, org_id FROM feature_flags ORDER BY id").values
say "checkouts", (0...6).map { |i|
  Thread.new do
    ActiveRecord::Base.connection_pool.with_connection { User.count + i }
  end
}.map(&:value)
say "destroyed", Item.find("i_ar1").destroy.id
