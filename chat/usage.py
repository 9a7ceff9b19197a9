"""Usage and cost: the sums behind the usage pages, their CSV and the operator's monthly report, all in SQL.

They are summed from roll-ups (UsageRollup: one row per team, member, key,
model, day and price period, and per month for budgets), kept in step with the
answers in the transaction that saves them (the signals in chat/signals.py call
`count_change` and `uncount_conversation`; the generation saves an answer's
final figures in one: Generation.save_finished_in_one_transaction). Imported answers never count: their figures are
whatever the file said. The raw answers are still summed when a page's days
are in another time zone than the roll-ups' (the server's), and by the
`usage_rollups --check` command that compares the two.
"""

import calendar
import csv
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal
from types import SimpleNamespace

from django.apps import apps as installed_apps
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _, gettext_lazy, ngettext

from chat.models import Conversation, Message, Price, UsageRollup

# The longest range a page, a CSV or a chart covers: a year, leap day included.
MAX_DAYS = 366


# --- Which messages ------------------------------------------------------------------


def assistant_messages():
    """Answers are what MiMo bills: only assistant messages carry tokens. Imported ones were billed elsewhere."""
    return Message.objects.filter(role=Message.Role.ASSISTANT, imported=False)


def in_period(messages, start, end):
    """Those that ran from the start day to the end day, both included, in the current time zone.

    Bounds as instants rather than `created_at__date`, so the database can use a range on the column.
    """
    since = timezone.make_aware(datetime.combine(start, time.min))
    until = timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min))
    return messages.filter(created_at__gte=since, created_at__lt=until)


def team_messages(team, start, end, member=None):
    """A team's answers in the period, or one member's answers in that team."""
    messages = assistant_messages().filter(conversation__team=team)
    if member is not None:
        messages = messages.filter(conversation__owner=member)
    return in_period(messages, start, end)


def member_messages(user, start, end, team=None):
    """A member's own answers in the period, across all their teams (or in one)."""
    messages = assistant_messages().filter(conversation__owner=user)
    if team is not None:
        messages = messages.filter(conversation__team=team)
    return in_period(messages, start, end)


# --- Which records: roll-ups, or the answers themselves ----------------------------------


def rollups_fit_the_days():
    """Whether the page's days (the current time zone) are the roll-ups' days (the server's)."""
    return timezone.get_current_timezone_name() == settings.TIME_ZONE


def in_days(rollups, start, end):
    return rollups.filter(period=UsageRollup.Period.DAY, day__gte=start, day__lte=end)


def team_records(team, start, end):
    """What a team's usage page sums: its roll-ups, or its answers when the viewer's days are not the server's."""
    if rollups_fit_the_days():
        return in_days(UsageRollup.objects.filter(team=team), start, end)
    return team_messages(team, start, end)


def member_records(user, start, end, team=None):
    """What a member's own usage page sums: their roll-ups (across their teams, or in one), or their answers."""
    if not rollups_fit_the_days():
        return member_messages(user, start, end, team=team)
    rollups = UsageRollup.objects.filter(owner=user)
    if team is not None:
        rollups = rollups.filter(team=team)
    return in_days(rollups, start, end)


def month_records(year, month, team=None):
    """The operator's monthly report, whose days are the server's: the roll-ups of every team or one."""
    rollups = UsageRollup.objects.all() if team is None else UsageRollup.objects.filter(team=team)
    return in_days(rollups, *month_bounds(year, month))


# --- Periods -------------------------------------------------------------------------


def month_bounds(year, month):
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def this_month():
    """The default range: the current calendar month, in the user's time zone."""
    today = timezone.localdate()
    return month_bounds(today.year, today.month)


def days_of(start, end):
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


# --- How usage is split --------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """A way to split usage: the column grouped by, and the columns that name each group."""

    name: str
    heading: str
    key: str
    fields: tuple

    def label(self, row):
        if self.name == "key":
            if row["api_key_id"] is None:
                return _("no key recorded")
            return f"{row['api_key__label']} (…{row['api_key__last_four']})"
        return row[self.fields[-1]] or _("unknown")


DIMENSIONS = {
    "model": Dimension("model", gettext_lazy("Model"), "model", ("model",)),
    "member": Dimension("member", gettext_lazy("Member"), "conversation__owner_id", ("conversation__owner__username",)),
    "team": Dimension("team", gettext_lazy("Team"), "conversation__team_id", ("conversation__team__name",)),
    "key": Dimension("key", gettext_lazy("Key"), "api_key_id", ("api_key__label", "api_key__last_four")),
}
# The team page splits by member; a member's own page by team (it is only ever them).
TEAM_DIMENSIONS = ["model", "member", "key"]
MEMBER_DIMENSIONS = ["model", "team", "key"]


def columns_of(*dimensions):
    columns = []
    for name in dimensions:
        dimension = DIMENSIONS[name]
        columns += [column for column in (dimension.key, *dimension.fields) if column not in columns]
    return columns


# The dimensions' columns (named as a message reaches them) where a roll-up has them.
ROLLUP_COLUMNS = {
    "conversation__owner_id": "owner_id",
    "conversation__owner__username": "owner__username",
    "conversation__team_id": "team_id",
    "conversation__team__name": "team__name",
}


def values_of(records, columns):
    """`records.values(*columns)`, with a roll-up's columns under the names a message's have: one row shape for both."""
    if records.model is not UsageRollup:
        return records.values(*columns)
    plain = [column for column in columns if column not in ROLLUP_COLUMNS]
    renamed = {column: F(ROLLUP_COLUMNS[column]) for column in columns if column in ROLLUP_COLUMNS}
    return records.values(*plain, **renamed)


# Of the prompt tokens, those MiMo counted for images, audio and video (its `prompt_tokens_details`):
# already in `prompt`, so in the cost and the budgets too; shown beside it, never added to it.
MEDIA_FIGURE_NAMES = {"image": "image_tokens", "audio": "audio_tokens", "video": "video_tokens"}

# The figures every table, chart and CSV row shows, and the fields they sum (as a message and a roll-up name them).
FIGURE_NAMES = {
    "prompt": "prompt_tokens",
    "completion": "completion_tokens",
    "reasoning": "reasoning_tokens",
    "cached": "cached_tokens",
    "searches": "web_search_calls",
    **MEDIA_FIGURE_NAMES,
}


def sums(records):
    """The figures summed in the database: whole numbers only, fast on any database (costs come after)."""
    return {
        # A roll-up holds its count of answers; a message is one.
        "messages": Coalesce(Sum("answers"), 0) if records.model is UsageRollup else Count("pk"),
        **{name: Coalesce(Sum(field), 0) for name, field in FIGURE_NAMES.items()},
    }


def with_price_period(records):
    """Each record with `price_id`: the price in force when its answers ran (a roll-up has it already)."""
    if records.model is UsageRollup:
        return records
    in_force = Price.objects.filter(model=OuterRef("model"), valid_from__lte=OuterRef("created_at"))
    return records.annotate(price_id=Subquery(in_force.order_by("-valid_from").values("pk")[:1]))


# A price's rates, in the order `cost_at` takes them.
RATES = ("input_per_million", "cached_input_per_million", "output_per_million", "web_search_per_thousand")


def cost_at(rates, row):
    """What these summed figures cost at these rates (None: no price, nothing), as Price.cost_of does for one answer.

    The cost is linear in the figures, so the cost of a group's sums is the sum of its answers' costs.
    """
    if rates is None:
        return Decimal(0)
    prompt_rate, cached_rate, output_rate, search_rate = rates
    return (
        (row["prompt"] - row["cached"]) * prompt_rate + row["cached"] * cached_rate + row["completion"] * output_rate
    ) / 1_000_000 + row["searches"] * search_rate / 1000


def grouped(records, *dimensions, per_day=False):
    """The sums of answers or roll-ups grouped by these dimensions (and by day), one row per group, in order.

    The database sums per group and price period; each period's cost is added here, at its
    price. A message's day is in the current time zone; a roll-up's is its own (the server's,
    see `team_records`).
    """
    columns = columns_of(*dimensions)
    records = with_price_period(records)
    if per_day:
        if records.model is not UsageRollup:
            records = records.annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        columns = ["day", *columns]
    periods = list(values_of(records, [*columns, "price_id"]).annotate(**sums(records)).order_by())
    # The few prices' rates after, by id: read with each row they would be made into Decimals
    # once per row (thousands of rows on a page, 150 in a budget check; slow on SQLite).
    prices = Price.objects.in_bulk({row["price_id"] for row in periods} - {None})
    rates = {pk: tuple(getattr(price, rate) for rate in RATES) for pk, price in prices.items()}
    rates[None] = None
    groups = {}
    for row in periods:
        key = tuple(row[column] for column in columns)
        group = groups.setdefault(key, {**{column: row[column] for column in columns}, **dict.fromkeys(
            ["messages", *FIGURE_NAMES, "total_tokens"], 0), "total_cost": Decimal(0)})  # fmt: skip
        for name in ["messages", *FIGURE_NAMES]:
            group[name] += row[name]
        group["total_tokens"] += row["prompt"] + row["completion"]
        group["total_cost"] += cost_at(rates[row["price_id"]], row)
    return [groups[key] for key in sorted(groups, key=in_order)]


def in_order(values):
    """A sort key for rows by these values, as a database orders them ascending (nothing first)."""
    return tuple((value is not None, value) for value in values)


def totals(records):
    """The sums over all the answers or roll-ups: one dict."""
    rows = grouped(records)
    return rows[0] if rows else {**dict.fromkeys(["messages", *FIGURE_NAMES, "total_tokens"], 0), "total_cost": Decimal(0)}


def table(records, dimension):
    """One row per group of the dimension, the biggest first, each with its `label` and its `cost_text`."""
    dimension = DIMENSIONS[dimension]
    rows = grouped(records, dimension.name)
    columns = columns_of(dimension.name)
    rows.sort(key=lambda row: (-row["total_tokens"], -row["total_cost"], in_order(row[column] for column in columns)))
    return [{**row, "label": dimension.label(row), "cost_text": money(row["total_cost"])} for row in rows]


def daily(records, dimension):
    return grouped(records, dimension, per_day=True)


def daily_totals(records):
    return grouped(records, per_day=True)


# --- Money ---------------------------------------------------------------------------


# The price table's currency: every price MiMo publishes (mimo-api.md §11) and every budget is in USD.
# One constant, not a look-up per figure: sums over prices in two currencies would mean nothing anyway.
CURRENCY = Price._meta.get_field("currency").default


def money(amount):
    """A cost for people: 4 decimals under 1 (a message costs fractions of a cent), 2 above.

    Cut, not rounded, as the limits page and the budgets' meters show costs (chat.limits.dollars):
    one amount reads the same on every page.
    """
    amount = Decimal(amount or 0)
    places = 2 if abs(amount) >= 1 else 4
    text = number_format(amount.quantize(Decimal(1).scaleb(-places), ROUND_DOWN), places, force_grouping=True)
    if 0 < amount < Decimal("0.0001"):
        text = "< " + number_format(Decimal("0.0001"), 4)
    return f"{text} {CURRENCY}"


def tokens_text(count):
    return ngettext("%(count)s token", "%(count)s tokens", count) % {
        "count": number_format(count, 0, force_grouping=True)
    }


# --- Charts: numbers for the SVG the template draws --------------------------------------

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 80, 12, 16, 44
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
# Colours come from CSS classes series-0 … series-9 (CSP allows no inline style); more series reuse them.
COLOURS = 10
MAX_DAY_LABELS = 10


@dataclass
class Segment:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass
class Tick:
    y: float
    label: str


@dataclass
class DayLabel:
    x: float
    label: str


@dataclass
class Chart:
    label: str
    axis_label: str
    segments: list = field(default_factory=list)
    ticks: list = field(default_factory=list)
    day_labels: list = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    plot_bottom: int = TOP + PLOT_HEIGHT
    plot_right: int = LEFT + PLOT_WIDTH
    middle_x: float = LEFT + PLOT_WIDTH / 2
    middle_y: float = TOP + PLOT_HEIGHT / 2


def nice_scale(biggest, whole):
    """A round top for the axis and its step (1, 2, 2.5 or 5 times a power of ten): four ticks or a few fewer."""
    biggest = Decimal(biggest)
    if biggest <= 0:
        return Decimal(1), Decimal(1) if whole else Decimal("0.25")
    raw = biggest / 4
    magnitude = Decimal(1).scaleb(raw.adjusted())
    steps = [m * magnitude for m in (1, 2, Decimal("2.5"), 5, 10)]
    if whole:  # no step of 2.5 tokens, nor of less than one
        steps = [max(step, Decimal(1)) for step in steps if step == step.to_integral_value()]
    step = next((step for step in steps if raw <= step), Decimal(1))
    top = step * (biggest / step).to_integral_value(ROUND_CEILING)
    return top, step


def chart(rows, day_rows, legend, dimension, days, *, cost):
    """Stacked bars, one per day: `rows` from `daily()`, `day_rows` from `daily_totals()`, `legend` from `legend()`."""
    dimension = DIMENSIONS[dimension]
    value = "total_cost" if cost else "total_tokens"
    text = money if cost else tokens_text
    biggest = max((row[value] for row in day_rows), default=0)
    top, step = nice_scale(biggest, whole=not cost)
    first, last = days[0], days[-1]
    period = f"{date_format(first, 'DATE_FORMAT')} – {date_format(last, 'DATE_FORMAT')}"
    result = Chart(
        label=(_("Cost per day, %(period)s, stacked by %(by)s") if cost else _("Tokens per day, %(period)s, stacked by %(by)s"))
        % {"period": period, "by": str(dimension.heading).lower()},
        axis_label=(_("Cost (%(currency)s)") % {"currency": CURRENCY}) if cost else _("Tokens"),
    )
    slot = PLOT_WIDTH / len(days)
    width = round(max(slot * 0.7, 1), 2)
    stacked = {}  # day -> height drawn so far
    order = {entry.key: entry for entry in legend}
    for row in sorted(rows, key=lambda row: (row["day"], order[row[dimension.key]].rank)):
        amount = row[value]
        if not amount:
            continue
        index = (row["day"] - first).days
        height = round(float(Decimal(amount) / top) * PLOT_HEIGHT, 2)
        below = stacked.get(row["day"], 0)
        stacked[row["day"]] = below + height
        entry = order[row[dimension.key]]
        result.segments.append(
            Segment(
                x=round(LEFT + index * slot + (slot - width) / 2, 2),
                y=round(TOP + PLOT_HEIGHT - below - height, 2),
                width=width,
                height=height,
                css=entry.css,
                title=_("%(day)s · %(series)s: %(value)s")
                % {"day": date_format(row["day"], "DATE_FORMAT"), "series": entry.label, "value": text(amount)},
            )
        )
    ticks = int(top / step)
    decimals = 0 if not cost else max(0, -step.normalize().as_tuple().exponent)
    for n in range(ticks + 1):
        tick = step * n
        result.ticks.append(
            Tick(y=round(TOP + PLOT_HEIGHT - float(tick / top) * PLOT_HEIGHT, 2), label=number_format(tick, decimals, force_grouping=True))
        )
    every = -(-len(days) // MAX_DAY_LABELS)
    for index in range(0, len(days), every):
        result.day_labels.append(DayLabel(x=round(LEFT + (index + 0.5) * slot, 2), label=date_format(days[index], "MONTH_DAY_FORMAT")))
    return result


@dataclass
class LegendEntry:
    key: object
    label: str
    css: str
    rank: int


def legend(table_rows, dimension):
    """The chart's series, from the table of the same dimension: biggest first, each with its colour class."""
    key = DIMENSIONS[dimension].key
    return [
        LegendEntry(key=row[key], label=row["label"], css=f"series-{rank % COLOURS}", rank=rank)
        for rank, row in enumerate(table_rows)
    ]


# --- CSV -----------------------------------------------------------------------------

# The media tokens are last, after the cost, so that the columns before them kept their places when they came.
CSV_COLUMNS = [
    "model", "member", "key", "messages", "prompt_tokens", "completion_tokens", "reasoning_tokens",
    "cached_tokens", "web_search_calls", "tokens", "cost", "image_tokens", "audio_tokens", "video_tokens",
]


def csv_rows(records, with_team=False):
    """One row per day × (team ×) model × member × key, as the CSV writes them."""
    dimensions = ["team", "model", "member", "key"] if with_team else ["model", "member", "key"]
    for row in grouped(records, *dimensions, per_day=True):
        yield {
            "day": row["day"].isoformat(),
            **({"team": row["conversation__team__name"]} if with_team else {}),
            "model": row["model"],
            "member": row["conversation__owner__username"],
            "key": DIMENSIONS["key"].label(row),
            "messages": row["messages"],
            "prompt_tokens": row["prompt"],
            "completion_tokens": row["completion"],
            "reasoning_tokens": row["reasoning"],
            "cached_tokens": row["cached"],
            "web_search_calls": row["searches"],
            "tokens": row["total_tokens"],
            # Eight places: a few cached tokens cost millionths of a cent.
            "cost": f"{Decimal(row['total_cost']).quantize(Decimal('0.00000001'), ROUND_HALF_UP):f}",
            # Of the prompt tokens: not added to `tokens` again.
            **{field: row[name] for name, field in MEDIA_FIGURE_NAMES.items()},
        }


def spreadsheet_safe(value):
    """A cell a spreadsheet will not run as a formula (labels and names are typed by people)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(out, records, with_team=False):
    columns = ["day", *(["team"] if with_team else []), *CSV_COLUMNS]
    columns[columns.index("cost")] = f"cost_{CURRENCY.lower()}"
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in csv_rows(records, with_team):
        writer.writerow([spreadsheet_safe(value) for value in row.values()])


# --- Roll-ups: kept in step with the answers --------------------------------------------

# What a roll-up groups by, and what it sums (as a message names them).
GROUP = ("period", "team_id", "owner_id", "api_key_id", "model", "day", "price_id")
SUMS = (
    "answers", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens", "web_search_calls",
    *MEDIA_FIGURE_NAMES.values(),
)
FIGURES = SUMS[1:]
# The fields of a message that decide whether, where and how much it counts.
COUNTED_FIELDS = {"role", "imported", "conversation", "api_key", "model", "created_at", *FIGURES}


@dataclass(frozen=True)
class Counted:
    """What one answer adds to the roll-ups: its day's group, and its count (1) and figures.

    `ran` is the (model, moment) its price period was looked up for: a later count of the same answer reuses it.
    """

    group: tuple
    amounts: tuple
    ran: tuple = ()

    @property
    def tokens(self):
        """Its prompt and completion tokens: what it weighs against the group's largest answer."""
        figures = dict(zip(SUMS, self.amounts))
        return figures["prompt_tokens"] + figures["completion_tokens"]


NOT_READ = object()  # a price period not read yet (None is a period without a price)


def counted(message, team_id, owner_id, before=None, price_id=NOT_READ):
    """What this message adds to the roll-ups (its conversation's team and owner given); None if it counts for nothing.

    Its price period is `price_id` when the caller read it with the message; else that of
    `before` (what it added before this save) if its model and moment did not change; else looked up.
    """
    if message.role != Message.Role.ASSISTANT or message.imported:
        return None
    ran = (message.model, message.created_at)
    if price_id is NOT_READ and before is not None and before.ran == ran:
        price_id = before.group[GROUP.index("price_id")]
    elif price_id is NOT_READ:
        price_id = price_in_force(message.model, message.created_at)
    day = timezone.localtime(message.created_at, timezone.get_default_timezone()).date()
    group = (UsageRollup.Period.DAY, team_id, owner_id, message.api_key_id, message.model, day, price_id)
    return Counted(group, (1, *(getattr(message, name) or 0 for name in FIGURES)), ran)


def price_in_force(model, moment):
    """The id of the price a message of this model run at that moment costs, None if none."""
    with connection.cursor() as cursor:
        cursor.execute(price_in_force_sql("%s", "%s"), [model, connection.ops.adapt_datetimefield_value(moment)])
        row = cursor.fetchone()
    return row[0] if row else None


def price_in_force_sql(model, moment):
    """The SELECT of `price_in_force` for a model and a moment given as SQL (parameters, or a message's
    columns). Plain SQL, as add_to_rows: one of these runs as each answer starts and before each save
    of one, and Django building it cost several times running it."""
    quote = connection.ops.quote_name
    column = {name: quote(Price._meta.get_field(name).column) for name in ("id", "model", "valid_from")}
    return (
        f"SELECT {column['id']} FROM {quote(Price._meta.db_table)}"
        f" WHERE {column['model']} = {model} AND {column['valid_from']} <= {moment}"
        f" ORDER BY {column['valid_from']} DESC LIMIT 1"
    )


def counted_as_stored(message_id):
    """What the message adds as the database holds it now: read before a save changes it (with its price period, in one query).

    Plain SQL, as add_to_rows: it runs before every save of an answer, and Django building and
    compiling its join and price subquery was 70 % of an answer's final save (bench/README.md).
    Only what counts is read, not the answer's text.
    """
    quote = connection.ops.quote_name

    def column(model, name, table):
        return f"{table}.{quote(model._meta.get_field(name).column)}"

    names = ["role", "imported", "api_key", "model", "created_at", *FIGURES]
    in_force = price_in_force_sql(column(Message, "model", "m"), column(Message, "created_at", "m"))
    sql = (
        f"SELECT {', '.join(column(Message, name, 'm') for name in names)},"
        f" {column(Conversation, 'team', 'c')}, {column(Conversation, 'owner', 'c')}, ({in_force})"
        f" FROM {quote(Message._meta.db_table)} m JOIN {quote(Conversation._meta.db_table)} c"
        f" ON {column(Conversation, 'id', 'c')} = {column(Message, 'conversation', 'm')}"
        f" WHERE {column(Message, 'id', 'm')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [message_id])
        row = cursor.fetchone()
    if row is None:
        return None
    stored = SimpleNamespace()
    for name, value in zip(names, row):
        field = Message._meta.get_field(name)
        # As the ORM reads them: SQLite gives a boolean as 0 or 1 and a moment as its text.
        for convert in connection.ops.get_db_converters(field.cached_col) + field.get_db_converters(connection):
            value = convert(value, field.cached_col, connection)
        setattr(stored, field.attname, value)
    team_id, owner_id, price_id = row[len(names) :]
    return counted(stored, team_id, owner_id, price_id=price_id)


def counted_as_saved(message, before=None):
    """What the message adds as it was just saved."""
    if Message.conversation.is_cached(message):
        team_id, owner_id = message.conversation.team_id, message.conversation.owner_id
    else:
        team_id, owner_id = Conversation.objects.values_list("team_id", "owner_id").get(pk=message.conversation_id)
    return counted(message, team_id, owner_id, before)


def count_change(before, after):
    """Move the roll-ups from what a message added before (a Counted or None) to what it adds now."""
    if before == after:
        return
    if before is not None and after is not None and before.group == after.group:  # new figures, same group
        add(after.group, [now - then for now, then in zip(after.amounts, before.amounts)], largest=after.tokens)
        return
    if before is not None:
        add(before.group, [-amount for amount in before.amounts])
    if after is not None:
        add(after.group, after.amounts, largest=after.tokens)


def month_group(day_group):
    """The month's group a day's group adds to: what budgets read, without the key (no budget is per key)."""
    where = dict(zip(GROUP, day_group))
    where |= {"period": UsageRollup.Period.MONTH, "api_key_id": None, "day": where["day"].replace(day=1)}
    return tuple(where[name] for name in GROUP)


def add(day_group, amounts, largest=0):
    """Add to the day's roll-up and its month's: one statement once both exist; `largest` is the
    tokens of the answer now counted, for the groups' largest answer (taking one out leaves it).

    A group has one row (UsageRollup's constraint). A day's row is never made without its
    month's, so when one row took the update it was the month's, and the day's is made. An
    answer that made the same row at the same moment (PostgreSQL) wins the insert; this one
    then updates it.
    """
    groups = (day_group, month_group(day_group))
    updated = add_to_rows(groups, amounts, largest)
    for group in groups[: len(groups) - updated]:
        try:
            with transaction.atomic():
                UsageRollup.objects.create(**dict(zip(GROUP, group)), **dict(zip(SUMS, amounts)), largest_tokens=max(largest, 0))
        except IntegrityError:
            add_to_rows([group], amounts, largest)


def add_to_rows(groups, amounts, largest):
    """Add to the roll-up rows of these groups that exist, in one UPDATE; returns how many rows it changed.

    Plain SQL, as generation.save_progress: Django building this statement (each group's seven
    conditions, an expression per sum) cost more than running it, and every answer runs it twice.
    A group's None (no key, no price) is matched with IS NULL, so that the indexes still serve.
    """
    quote = connection.ops.quote_name
    column = {name: quote(UsageRollup._meta.get_field(name).column) for name in (*GROUP, *SUMS, "largest_tokens")}
    assignments = [f"{column[name]} = {column[name]} + %s" for name in SUMS]
    params = list(amounts)
    if largest:
        greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
        assignments.append(f"{column['largest_tokens']} = {greatest}({column['largest_tokens']}, %s)")
        params.append(largest)
    conditions = []
    for group in groups:
        matches = []
        for name, value in zip(GROUP, group):
            if value is None:
                matches.append(f"{column[name]} IS NULL")
            else:
                matches.append(f"{column[name]} = %s")
                params.append(connection.ops.adapt_datefield_value(value) if name == "day" else value)
        conditions.append(f"({' AND '.join(matches)})")
    sql = f"UPDATE {quote(UsageRollup._meta.db_table)} SET {', '.join(assignments)} WHERE {' OR '.join(conditions)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def uncount_conversation(conversation):
    """Take a conversation's answers out of the roll-ups: it is being deleted for good (a purge).

    What a conversation in the trash cost still counts; once purged it no longer does, as
    when budgets summed the answers themselves.
    """
    for row in day_rollups(Message.objects.filter(conversation=conversation)):
        add(tuple(row[name] for name in GROUP), [-row[name] for name in SUMS])


def day_rollups(messages, price_model=Price):
    """The days' roll-ups as the answers among `messages` make them: one dict per group, named as UsageRollup's fields.

    The price model is given so that the migrations that build them can use their own; a
    figure their message model has not yet (the media tokens, before 0014) sums as 0.
    """
    fields = {field.name for field in messages.model._meta.concrete_fields}
    in_force = price_model.objects.filter(model=OuterRef("model"), valid_from__lte=OuterRef("created_at"))
    groups = (
        messages.filter(role="assistant", imported=False)
        .values(
            "api_key_id",
            "model",
            team_id=F("conversation__team_id"),
            owner_id=F("conversation__owner_id"),
            day=TruncDate("created_at", tzinfo=timezone.get_default_timezone()),
            price_id=Subquery(in_force.order_by("-valid_from").values("pk")[:1]),
        )
        # Summed under other names: a message's own fields have these.
        .annotate(
            answers=Count("pk"),
            **{f"sum_{name}": Coalesce(Sum(name), 0) for name in FIGURES if name in fields},
            largest=Coalesce(Max(Coalesce("prompt_tokens", 0) + Coalesce("completion_tokens", 0)), 0),
        )
        .order_by()
    )
    for row in groups:
        yield {"period": UsageRollup.Period.DAY, **{name: row[name] for name in GROUP[1:]}, "answers": row["answers"]} | {
            name: row.get(f"sum_{name}", 0) for name in FIGURES
        } | {"largest_tokens": row["largest"]}


def all_rollups(messages, price_model=Price):
    """The days' roll-ups and the months' they add up to."""
    months, largest = {}, {}
    for row in day_rollups(messages, price_model):
        yield row
        group = month_group(tuple(row[name] for name in GROUP))
        sums = months.setdefault(group, [0] * len(SUMS))
        for index, name in enumerate(SUMS):
            sums[index] += row[name]
        largest[group] = max(largest.get(group, 0), row["largest_tokens"])
    for group, sums in months.items():
        yield dict(zip(GROUP, group)) | dict(zip(SUMS, sums)) | {"largest_tokens": largest[group]}


def lock_rollups():
    """Hold off every other writer of roll-ups until the transaction ends: a rebuild must not miss one.

    PostgreSQL locks the table; SQLite's first write (the rebuild's delete) takes the lock for the whole database.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {UsageRollup._meta.db_table} IN EXCLUSIVE MODE")


def rebuild_rollups(models=None, since=None, apps=installed_apps):
    """Make the roll-ups again from the answers: of these models, from the month of `since` on
    (a price of theirs changed from then), or all of them.

    `apps` is the migration's when the migration that adds them builds them.
    """
    message_model, price_model = apps.get_model("chat", "Message"), apps.get_model("chat", "Price")
    rollup_model = apps.get_model("chat", "UsageRollup")
    messages, stale = message_model.objects.all(), rollup_model.objects.all()
    if models is not None:
        stale, messages = stale.filter(model__in=models), messages.filter(model__in=models)
    if since is not None:  # whole months: a month's roll-up sums all its days
        zone = timezone.get_default_timezone()
        first = timezone.localtime(since, zone).date().replace(day=1)
        stale = stale.filter(day__gte=first)
        messages = messages.filter(created_at__gte=timezone.make_aware(datetime.combine(first, time.min), zone))
    with transaction.atomic():
        lock_rollups()
        stale.delete()
        # The migrations that built them before knew no `largest_tokens` or media tokens: only the fields its model has.
        fields = {field.attname for field in rollup_model._meta.concrete_fields}
        rows = [rollup_model(**{name: value for name, value in row.items() if name in fields}) for row in all_rollups(messages, price_model)]
        rollup_model.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def rollup_differences():
    """Where the roll-ups and the answers disagree: (group, what the roll-ups say, what the answers say) each.

    The sums only: a group's largest answer is a high-water mark that a deleted answer leaves as it was.
    """
    kept = {}
    for row in UsageRollup.objects.values(*GROUP).annotate(**{f"sum_{name}": Sum(name) for name in SUMS}).order_by():
        kept[tuple(row[name] for name in GROUP)] = tuple(row[f"sum_{name}"] for name in SUMS)
    raw = {tuple(row[name] for name in GROUP): tuple(row[name] for name in SUMS) for row in all_rollups(Message.objects.all())}
    nothing = (0,) * len(SUMS)
    return [
        (group, kept.get(group, nothing), raw.get(group, nothing))
        for group in sorted(kept.keys() | raw.keys(), key=str)
        if kept.get(group, nothing) != raw.get(group, nothing)
    ]
