"""Django's ORM (psycopg 3) as one tenant of the seed's schema: prints one line per result.

argv[1..5] are user, password, host, port, database; argv[6], if given, a libpq `options`
value. tests/python_drivers.rs runs it through Orgwall as tenant org_a and directly as a role
that PostgreSQL row-level security confines to org_a, and compares the transcripts. The app
knows nothing about tenants: what Django does on connect (it sets TimeZone with set_config),
introspection, querysets with joins, aggregates, subqueries, slicing, writes, atomic blocks
that roll back, a unique violation, get_or_create, bulk_create.
"""
import decimal
import sys

import django
from django.conf import settings

user, password, host, port, name = sys.argv[1:6]
options = {"options": sys.argv[6]} if len(sys.argv) > 6 else {}
settings.configure(
    USE_TZ=True,
    TIME_ZONE="America/New_York",
    INSTALLED_APPS=[],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": user,
            "PASSWORD": password,
            "HOST": host,
            "PORT": port,
            "OPTIONS": options,
        }
    },
)
django.setup()

from django.db import IntegrityError, connection, models, transaction  # noqa: E402
from django.db.models import Count, F, Q, Sum  # noqa: E402

out = []


def say(*what):
    out.append(" ".join(repr(w) for w in what))


class Item(models.Model):
    id = models.TextField(primary_key=True)
    item_number = models.TextField()
    description = models.TextField(null=True)
    unit_of_measure = models.TextField(default="EA")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "flow"
        db_table = "items"
        managed = False


class Location(models.Model):
    id = models.TextField(primary_key=True)
    site = models.TextField()
    name = models.TextField()

    class Meta:
        app_label = "flow"
        db_table = "locations"
        managed = False


class Move(models.Model):
    id = models.TextField(primary_key=True)
    item = models.ForeignKey(Item, models.DO_NOTHING, related_name="moves")
    location = models.ForeignKey(Location, models.DO_NOTHING, related_name="moves")
    lot_id = models.TextField(null=True)
    quantity_delta = models.DecimalField(max_digits=20, decimal_places=4)
    reason = models.TextField(default="adjustment")
    reference = models.TextField(null=True)

    class Meta:
        app_label = "flow"
        db_table = "inventory_ledger"
        managed = False


with connection.cursor() as c:
    c.execute("SHOW TimeZone")
    say("time zone", c.fetchone())
say("tables", [t for t in connection.introspection.table_names() if t in ("items", "locations", "inventory_ledger")])
with connection.cursor() as c:
    say("columns", [(d.name, d.null_ok) for d in connection.introspection.get_table_description(c, "items")])
    say("constraints", sorted(
        (v["columns"], v["primary_key"], v["unique"])
        for v in connection.introspection.get_constraints(c, "items").values()
        if v["primary_key"] or v["unique"]
    ))

say("get own", Item.objects.get(pk="i_a1").item_number)
say("other tenant's exists", Item.objects.filter(pk="i_b1").exists())
say("items", list(Item.objects.order_by("item_number").values_list("item_number", flat=True)))
say("first page", list(Item.objects.order_by("id").values_list("id", flat=True)[0:2]))
say("second page", list(Item.objects.order_by("id").values_list("id", flat=True)[2:4]))
say("filter", list(Item.objects.filter(Q(description__icontains="a") | Q(active=False)).order_by("id").values_list("id", flat=True)))
say("joined", list(Move.objects.select_related("item", "location").order_by("id").values_list("id", "item__item_number", "location__name")))
say("per item", list(Move.objects.values("item_id").annotate(n=Count("id"), total=Sum("quantity_delta")).order_by("item_id").values_list("item_id", "n", "total")))
say("active items' moves", list(Move.objects.filter(item__active=True, location__site="Main").order_by("id").values_list("id", flat=True)))
say("subquery", list(Item.objects.filter(id__in=Move.objects.filter(reason="issue").values("item_id")).values_list("id", flat=True)))

Item.objects.create(id="i_new", item_number="W-900", description="Ladder")
Move.objects.create(id="led_new", item_id="i_new", location_id="l_a1", quantity_delta=decimal.Decimal("4.25"))
say("created", Item.objects.get(pk="i_new").unit_of_measure, Move.objects.get(pk="led_new").reason)
say("updated rows", Item.objects.filter(item_number="W-100").update(active=False))
say("bumped rows", Move.objects.filter(reason="receipt").update(quantity_delta=F("quantity_delta") + 1))
say("moves", list(Move.objects.order_by("id").values_list("id", "quantity_delta")))
try:
    with transaction.atomic():
        Move.objects.filter(pk="led_new").delete()
        say("deleted inside atomic", Move.objects.filter(pk="led_new").exists())
        raise RuntimeError("roll back")
except RuntimeError:
    pass
say("after rollback", Move.objects.filter(pk="led_new").exists())
try:
    with transaction.atomic():
        Item.objects.create(id="i_dup", item_number="W-200")
except IntegrityError as e:
    say("unique violation", e.__cause__.sqlstate)
obj, created = Item.objects.get_or_create(item_number="W-400", defaults={"id": "i_a4"})
say("get_or_create", obj.id, created)
obj, created = Item.objects.get_or_create(item_number="W-400", defaults={"id": "i_a5"})
say("get_or_create again", obj.id, created)
Location.objects.bulk_create([Location(id=f"l_n{i}", site="North", name=f"N-{i}") for i in range(3)])
say("locations", list(Location.objects.order_by("id").values_list("id", "site", "name")))
say("deleted", Location.objects.filter(site="North").delete()[0])
with connection.cursor() as c:
    c.execute("SELECT count(*) FROM inventory_ledger WHERE quantity_delta > %s", [0])
    say("raw", c.fetchone())

print("\n".join(out))
