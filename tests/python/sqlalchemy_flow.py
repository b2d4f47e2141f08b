"""SQLAlchemy 2 (ORM, psycopg 3) as one tenant of the seed's schema: prints one line per result.

argv[1] is a connection URL. tests/python_drivers.rs runs it through Orgwall as tenant org_a
and directly as a role that PostgreSQL row-level security confines to org_a, and compares the
transcripts. The app knows nothing about tenants (no org_id anywhere): what an ORM does on
connect (version, type lookups), schema reflection, identity-map gets, joins, relationship
loading, aggregates, inserts, updates, deletes, a rollback, a unique violation.
"""
import decimal
import sys

from sqlalchemy import ForeignKey, create_engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

out = []


def say(*what):
    out.append(" ".join(repr(w) for w in what))


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[str] = mapped_column(primary_key=True)
    item_number: Mapped[str]
    description: Mapped[str | None]
    unit_of_measure: Mapped[str] = mapped_column(server_default="EA")
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    moves: Mapped[list["Move"]] = relationship(back_populates="item", order_by="Move.id")


class Location(Base):
    __tablename__ = "locations"
    id: Mapped[str] = mapped_column(primary_key=True)
    site: Mapped[str]
    name: Mapped[str]


class Move(Base):
    __tablename__ = "inventory_ledger"
    id: Mapped[str] = mapped_column(primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    lot_id: Mapped[str | None]
    quantity_delta: Mapped[decimal.Decimal]
    reason: Mapped[str] = mapped_column(server_default="adjustment")
    reference: Mapped[str | None]
    item: Mapped[Item] = relationship(back_populates="moves")


engine = create_engine(sys.argv[1].replace("postgresql://", "postgresql+psycopg://"), pool_size=2)

# Reflection: names and types only (defaults differ between the two databases' set-ups).
insp = inspect(engine)
say("has items", insp.has_table("items"), "has nothing", insp.has_table("no_such_table"))
say("columns", [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns("items")])
say("pk", insp.get_pk_constraint("inventory_ledger")["constrained_columns"])
say("fks", sorted((f["constrained_columns"], f["referred_table"]) for f in insp.get_foreign_keys("inventory_ledger")))
say("unique indexes", sorted(i["column_names"] for i in insp.get_indexes("items") if i["unique"]))

with Session(engine) as s:
    say("get own", s.get(Item, "i_a1").item_number)
    say("get other tenant's", s.get(Item, "i_b1"))
    say("items", s.scalars(select(Item.item_number).order_by(Item.item_number)).all())
    say("by number", [(i.id, i.description) for i in s.scalars(select(Item).where(Item.item_number == "W-100"))])
    rows = s.execute(
        select(Item.item_number, Location.name, func.sum(Move.quantity_delta))
        .join(Move.item)
        .join(Location, Move.location_id == Location.id, isouter=True)
        .group_by(Item.item_number, Location.name)
        .order_by(Item.item_number, Location.name)
    ).all()
    say("balances", [tuple(r) for r in rows])
    loaded = s.scalars(select(Item).options(selectinload(Item.moves)).order_by(Item.id)).all()
    say("moves per item", [(i.id, [m.id for m in i.moves]) for i in loaded])
    say("count", s.scalar(select(func.count()).select_from(Move)))

    s.add(Item(id="i_new", item_number="W-900", description="Ladder"))
    s.add(Move(id="led_new", item_id="i_new", location_id="l_a1", quantity_delta=decimal.Decimal("4.25")))
    s.commit()
    say("inserted", s.get(Item, "i_new").unit_of_measure, s.get(Move, "led_new").reason)

    item = s.get(Item, "i_a2")
    item.description = "Skates, pair"
    s.commit()
    say("updated", s.scalar(select(Item.description).where(Item.id == "i_a2")))
    s.execute(text("UPDATE items SET active = false WHERE item_number = :n"), {"n": "W-100"})
    s.commit()
    say("bulk updated", s.scalars(select(Item.id).where(Item.active.is_(False)).order_by(Item.id)).all())

    s.delete(s.get(Move, "led_new"))
    s.flush()
    say("deleted, before rollback", s.get(Move, "led_new"))
    s.rollback()
    say("after rollback", s.get(Move, "led_new").id)

    s.add(Item(id="i_dup", item_number="W-200"))
    try:
        s.commit()
    except IntegrityError as e:
        say("unique violation", e.orig.sqlstate)
        s.rollback()
    # W-400 exists only for the other tenant: free for this one.
    s.add(Item(id="i_a4", item_number="W-400"))
    s.commit()
    say("final items", s.scalars(select(Item.id).order_by(Item.id)).all())

print("\n".join(out))
