"""The pay-as-you-go prices in force when this was written (mimo-api.md §11 and §8, overseas, USD).

Prices after the permanent cut of 2026-05-27; web search $5 per thousand calls
overseas. A superuser adds newer rows in the Django admin as prices change.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

VALID_FROM = datetime(2026, 5, 27, tzinfo=UTC)
PRICES = [
    # model, cached input, input, output (per million tokens)
    ("mimo-v2.5-pro", "0.0036", "0.435", "0.87"),
    ("mimo-v2.5", "0.0028", "0.14", "0.28"),
    ("mimo-v2.5-pro-ultraspeed", "0.0108", "1.305", "2.61"),
]


def add_prices(apps, schema_editor):
    Price = apps.get_model("chat", "Price")
    for model, cached, fresh, output in PRICES:
        Price.objects.get_or_create(
            model=model,
            valid_from=VALID_FROM,
            defaults={
                "currency": "USD",
                "cached_input_per_million": Decimal(cached),
                "input_per_million": Decimal(fresh),
                "output_per_million": Decimal(output),
                "web_search_per_thousand": Decimal("5"),
            },
        )


def remove_prices(apps, schema_editor):
    apps.get_model("chat", "Price").objects.filter(valid_from=VALID_FROM, model__in=[p[0] for p in PRICES]).delete()


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_library_review_prices")]
    operations = [migrations.RunPython(add_prices, remove_prices)]
