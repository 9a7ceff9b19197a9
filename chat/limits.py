"""Budgets and pace: whether a member may start an answer now, decided before anything is sent to MiMo.

A team admin sets a monthly budget in tokens and/or cost for the team and for
each member, and a pace for every member: messages a minute and answers
streaming at once (accounts.models.Team, Membership). `admit` runs inside the
transaction that creates the streaming answer (chat/generation.py), after
taking a write lock on the team's row: sends of one team are admitted one
after the other, each seeing the answers admitted before it.
"""

import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

from django.db import transaction
from django.db.models import F, Max, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.text import get_text_list
from django.utils.translation import gettext as _, ngettext

from accounts.models import Membership, Team, User
from chat import usage
from chat.models import Attachment, Message, UsageRollup

WARNING_RATIO = Decimal("0.8")  # the member is warned from 80 % of a budget on
PACE_WINDOW = timedelta(minutes=1)
# What an answer still streaming (no usage yet) is assumed to take: the scope's largest
# answer of today and yesterday (from the roll-ups' days, so a bounded read however big the
# month), at what the scope's tokens cost on average this month, and never less than the
# floor. The largest, not the average: a budget may then be refused a little early, but
# concurrent sends overshoot it by at most about one answer. The floor covers a scope with
# no history, or only tiny answers: a short question with a thinking answer runs one to a
# few thousand tokens, a cent at mimo-v2.5-pro's prices.
RECENT_DAYS = 2
RESERVE_FLOOR_TOKENS = 4_000
RESERVE_FLOOR_COST = Decimal("0.01")
BUDGET_EXHAUSTED = "budget_exhausted"  # Message.error_kind of a tool round refused for the budget

TOKENS, COST = "tokens", "cost"
TEAM, MEMBER = "team", "member"


class Refused(Exception):
    """A send that may not go ahead. `str()` is the sentence for the member, in their language;
    `meter` is the budget that refused it (None for the pace)."""

    def __init__(self, message, meter=None):
        super().__init__(message)
        self.meter = meter


# --- Used this month ----------------------------------------------------------------


def month_start(now=None):
    """The start of the current calendar month, in the server's time zone (not the member's)."""
    local = timezone.localtime(now or timezone.now(), timezone.get_default_timezone())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def answers(team, owner=None):
    """The team's assistant messages, or only those of one member's conversations in it (never imported ones).

    Every query of these is narrowed by an index on the answers' own columns (status, or a
    recent `created_at`), so team and owner are compared as `+ 0`, which no index serves:
    SQLite keeps no statistics, and would otherwise start from the scope's conversations and
    read every answer they ever had (milliseconds at a million, a second when sorted).
    """
    messages = usage.assistant_messages().annotate(scope_team=F("conversation__team_id") + 0).filter(scope_team=team.pk)
    if owner is not None:
        messages = messages.annotate(scope_owner=F("conversation__owner_id") + 0).filter(scope_owner=getattr(owner, "pk", owner))
    return messages


def rollups_this_month(team):
    """The team's usage roll-ups of this month (chat/usage.py): a few rows per member, however many answers.

    Conversations in the trash count too: what they cost was spent. A purged one
    no longer counts; inexact on purpose, since a purge comes 30 days later.
    """
    return UsageRollup.objects.filter(team=team, period=UsageRollup.Period.MONTH, day=month_start().date())


def used_by_member(team):
    """{member's id: (tokens, cost)} of the team's answers this month, at the price in force when each ran: the limits page's."""
    return {
        row["conversation__owner_id"]: (row["total_tokens"], row["total_cost"])
        for row in usage.grouped(rollups_this_month(team), "member")
    }


def used_this_month(team, owner=None):
    """(tokens, cost) of the scope's answers this month, at the price in force when each ran."""
    rollups = rollups_this_month(team)
    if owner is not None:
        rollups = rollups.filter(owner=owner)
    totals = usage.totals(rollups)
    return totals["total_tokens"], totals["total_cost"]


def used_by_team_and_member(team, owner_id):
    """((tokens, cost) of the team, (tokens, cost) of one member in it) this month, at the price in force
    when each answer ran: the budget check's, in one read of a row per price period (a member's share
    summed beside the team's), with the period's rates."""
    rate_columns = [f"price__{rate}" for rate in usage.RATES]
    scopes = {"team": Q(), "own": Q(owner_id=owner_id)}
    # The budgets need tokens and cost: the media tokens, already among the prompt's, are not read.
    figure_names = {name: field for name, field in usage.FIGURE_NAMES.items() if name not in usage.MEDIA_FIGURE_NAMES}
    rows = (
        rollups_this_month(team)
        .values("price_id", *rate_columns)
        .annotate(**{
            f"{scope}_{name}": Coalesce(Sum(field, filter=which), 0)
            for scope, which in scopes.items() for name, field in figure_names.items()
        })  # fmt: skip
        .order_by()
    )
    used = {scope: (0, Decimal(0)) for scope in scopes}
    for row in rows:
        rates = None if row["price_id"] is None else tuple(row[column] for column in rate_columns)
        for scope, (tokens, cost) in used.items():
            figures = {name: row[f"{scope}_{name}"] for name in figure_names}
            used[scope] = (tokens + figures["prompt"] + figures["completion"], cost + usage.cost_at(rates, figures))
    return used["team"], used["own"]


def streaming_now(team):
    """(member's id, prompt tokens) of each of the team's answers streaming now: a handful, read once per send."""
    return list(answers(team).filter(status=Message.Status.STREAMING).values_list("conversation__owner_id", "prompt_tokens"))


def largest_recent_answers(team, owner_id):
    """{None: the tokens of the team's largest answer of the last RECENT_DAYS days, owner_id: the member's},
    from the roll-ups' days: a few rows per member, however many answers."""
    today = timezone.localdate(timezone.now(), timezone.get_default_timezone())
    days = UsageRollup.objects.filter(team=team, period=UsageRollup.Period.DAY, day__gt=today - timedelta(days=RECENT_DAYS))
    largest = days.aggregate(team=Max("largest_tokens"), own=Max("largest_tokens", filter=Q(owner_id=owner_id)))
    return {owner_id: largest["own"] or 0, None: largest["team"] or 0}  # the team's when owner_id is None


def reserved(owner, streaming, used, largest):
    """(tokens, cost) held for the scope's answers still streaming, each as RESERVE_FLOOR_* above says.

    Read from what the check read already: the team's answers `streaming` now (`streaming_now`), the
    (tokens, cost) the scope `used` this month and its `largest` recent answer (`largest_recent_answers`).
    """
    count = sum(1 for who, prompt in streaming if prompt is None and owner in (None, who))
    if not count:
        return 0, Decimal(0)
    tokens, cost = used
    each_tokens = max(RESERVE_FLOOR_TOKENS, largest.get(owner, 0))
    each_cost = max(RESERVE_FLOOR_COST, each_tokens * cost / tokens if tokens else Decimal(0))
    return count * each_tokens, count * each_cost


# --- Meters --------------------------------------------------------------------------


@dataclass
class Meter:
    """One budget: whose (the team's or the member's own), in what, used (and reserved) of its limit.

    Its words are made when read, so a page or a socket frame shows them in its
    own language; nothing here touches the database after it is built.
    """

    whose: str  # TEAM or MEMBER
    kind: str  # TOKENS or COST
    team: Team
    used: int | Decimal
    limit: int | Decimal
    reserved: int | Decimal = 0
    admins: list[str] = field(default_factory=list)
    # Whether the member reading it is a team admin of the team: told to raise it, not to ask themselves.
    read_by_admin: bool = False
    # The one meter by the composer whose warning shows (member_meters): one notice, not one per meter.
    shows_warning: bool = False

    @property
    def ratio(self):
        if self.limit <= 0:
            return Decimal(1)
        return Decimal(self.used) / Decimal(self.limit)

    @property
    def percent(self):
        return int(self.ratio * 100)

    @property
    def is_warning(self):
        return self.ratio >= WARNING_RATIO

    @property
    def is_used_up(self):
        return self.used >= self.limit

    @property
    def is_exhausted(self):
        """No room for another answer: used, plus what the answers still streaming will take."""
        return self.used + self.reserved >= self.limit

    # Plain strings for <meter> attributes: never localised (no "1,234" or "0,12").
    @property
    def value_attr(self):
        return str(min(self.used, self.limit))

    @property
    def max_attr(self):
        return str(self.limit)

    @property
    def high_attr(self):
        return str(Decimal(self.limit) * WARNING_RATIO)

    @property
    def cost_places(self):
        """Decimals enough that one percent of the limit is a whole last digit: at least cents.

        With amounts cut (not rounded) to these places, the used amount and the percent
        (also cut) always agree: "$0.0182 of $0.0200" beside 91 %, never "$0.02 of $0.02".
        """
        places = -Decimal(self.limit).normalize().as_tuple().exponent + 2
        return max(2, places)

    def amount(self, value):
        if self.kind == COST:
            return dollars(value, self.cost_places)
        return number_format(value, force_grouping=True)

    def of_limit(self):
        """"1,234 of 10,000 tokens" or "$0.12 of $5.00"."""
        values = {"used": self.amount(self.used), "limit": self.amount(self.limit)}
        if self.kind == COST:
            return _("%(used)s of %(limit)s") % values
        return _("%(used)s of %(limit)s tokens") % values

    @property
    def name(self):
        return _("Cost this month") if self.kind == COST else _("Tokens this month")

    @property
    def summary(self):
        return _("%(amount)s this month") % {"amount": self.of_limit()}

    @property
    def owner_label(self):
        if self.whose == TEAM:
            return _("budget of %(team)s") % {"team": self.team.name}
        return _("your own budget in %(team)s") % {"team": self.team.name}

    @property
    def who_can_raise(self):
        if self.read_by_admin:
            return _("As a team admin of %(team)s, you can raise it on its Limits page.") % {"team": self.team.name}
        if not self.admins:
            return _("Ask the operator of this mimoweb to raise it.")
        names = get_text_list(self.admins, _("or"))
        return ngettext(
            "Ask %(names)s, a team admin of %(team)s, to raise it.",
            "Ask %(names)s, the team admins of %(team)s, to raise it.",
            len(self.admins),
        ) % {"names": names, "team": self.team.name}

    @property
    def refusal(self):
        """Why a send is refused: which limit, used of limit, who can raise it."""
        values = {"team": self.team.name, "amount": self.of_limit()}
        if self.is_used_up and self.whose == TEAM:
            sentence = _("%(team)s has used up its monthly budget: %(amount)s this month.") % values
        elif self.is_used_up:
            sentence = _("You have used up your own monthly budget in %(team)s: %(amount)s this month.") % values
        elif self.whose == TEAM:
            sentence = _(
                "The monthly budget of %(team)s is almost used up: %(amount)s this month, and answers "
                "still streaming will take the rest. Try again when they have finished."
            ) % values
        else:
            sentence = _(
                "Your own monthly budget in %(team)s is almost used up: %(amount)s this month, and your "
                "answers still streaming will take the rest. Try again when they have finished."
            ) % values
        return f"{sentence} {self.who_can_raise}"

    @property
    def warning(self):
        """What the member sees from 80 % on."""
        if self.is_used_up:
            return self.refusal
        values = {"percent": self.percent, "team": self.team.name, "amount": self.of_limit()}
        if self.whose == TEAM:
            return _("%(team)s has used %(percent)s%% of its monthly budget: %(amount)s.") % values
        return _("You have used %(percent)s%% of your own monthly budget in %(team)s: %(amount)s.") % values


def team_admin_names(team):
    admins = User.objects.filter(memberships__team=team, memberships__role=Membership.Role.ADMIN).order_by("username")
    return [admin.get_full_name() or admin.username for admin in admins]


def budgeted(team, membership):
    """The (whose, holder, owner id) of each budget set for this member: the team's, then their own."""
    scopes = [(TEAM, team, None)]
    if membership is not None:
        scopes.append((MEMBER, membership, membership.user_id))
    return [scope for scope in scopes if (scope[1].monthly_token_limit, scope[1].monthly_cost_limit) != (None, None)]


def meters(team, membership, *, streaming=None):
    """Every budget set for this member in this team: the team's, then their own; with what the answers
    `streaming` now (`streaming_now`) hold, when given."""
    scopes = budgeted(team, membership)
    if not scopes:
        return []
    # Two reads for both scopes, the second only while an answer of the team has no usage yet.
    owner_id = membership.user_id if membership is not None else None
    team_used, own_used = used_by_team_and_member(team, owner_id)
    used = {None: team_used, owner_id: own_used}
    streaming = streaming or []
    largest = largest_recent_answers(team, owner_id) if any(prompt is None for _who, prompt in streaming) else {}
    found = []
    for whose, holder, owner in scopes:
        tokens, cost = used[owner]
        held_tokens, held_cost = reserved(owner, streaming, used[owner], largest)
        if holder.monthly_token_limit is not None:
            found.append(Meter(whose, TOKENS, team, tokens, holder.monthly_token_limit, held_tokens))
        if holder.monthly_cost_limit is not None:
            found.append(Meter(whose, COST, team, cost, holder.monthly_cost_limit, held_cost))
    # Who can raise a budget is said only of one used up (or taken by the answers streaming).
    names = team_admin_names(team) if any(meter.is_exhausted for meter in found) else []
    for meter in found:
        meter.admins = names
        meter.read_by_admin = membership is not None and membership.role == Membership.Role.ADMIN
    return found


def member_meters(conversation):
    """What the member sees by the composer: per kind, the tighter of the team's budget and their own."""
    membership = Membership.objects.select_related("team").filter(team_id=conversation.team_id, user_id=conversation.owner_id).first()
    team = membership.team if membership else Team.objects.get(pk=conversation.team_id)
    tightest = {}
    for meter in meters(team, membership):
        if meter.kind not in tightest or meter.ratio > tightest[meter.kind].ratio:
            tightest[meter.kind] = meter
    shown = [tightest[kind] for kind in (TOKENS, COST) if kind in tightest]
    warnings = [meter for meter in shown if meter.is_warning]
    if warnings:
        max(warnings, key=lambda meter: meter.ratio).shows_warning = True
    return shown


# --- Admission --------------------------------------------------------------------


def admit(conversation, team=None, *, pace=True):
    """Raise Refused if the conversation's owner may not start an answer now.

    Call inside the transaction that then creates the streaming answer: it
    locks the team's row (on PostgreSQL; SQLite has no row locks, and the
    write lock its transactions take at BEGIN IMMEDIATE covers the whole
    database), held to the commit, so the next send of the team counts this
    one's answer as streaming; `team` when the caller locked it already, in
    the same transaction. `pace=False` for the tool rounds of an answer
    already admitted: only the budgets are checked again.

    Returns whether a budget applies to the member: only then are meters shown by the composer,
    and updated after each answer.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("limits.admit needs the transaction that creates the answer")
    team = team or Team.objects.select_for_update().get(pk=conversation.team_id)
    membership = Membership.objects.filter(team=team, user_id=conversation.owner_id).first()
    if membership is None:  # removed from the team: the conversation stays theirs to read, not to continue
        raise Refused(
            _("You are no longer a member of %(team)s, so this conversation cannot go on with its keys.")
            % {"team": team.name}
        )
    metered = bool(budgeted(team, membership))
    # Read only for a limit that needs it: without one, a hundred answers starting at once need not scan the team's.
    streaming = streaming_now(team) if metered or (pace and team.streams_at_once is not None) else []
    if pace:
        check_pace(team, conversation.owner_id, streaming)
    for meter in meters(team, membership, streaming=streaming):
        if meter.is_exhausted:
            raise Refused(meter.refusal, meter)
    return metered


def check_pace(team, owner_id, streaming):
    """The member's answers streaming at once (of `streaming_now`), and messages in the last minute, against the team's pace."""
    if team.streams_at_once is not None:
        streaming = sum(1 for who, _prompt in streaming if who == owner_id)
        if streaming >= team.streams_at_once:
            raise Refused(
                ngettext(
                    "You have %(count)d answer streaming, the most %(team)s allows at once. "
                    "Try again when it has finished.",
                    "You have %(count)d answers streaming, the most %(team)s allows at once. "
                    "Try again when one of them has finished.",
                    streaming,
                )
                % {"count": streaming, "team": team.name}
            )
    if team.messages_per_minute is not None:
        limit = team.messages_per_minute
        now = timezone.now()
        # A message is an answer started by a send (new, edited, regenerated, retried);
        # an answer's later tool rounds (whose parent is an answer) are not sends.
        started = (
            answers(team, owner_id)
            .exclude(parent__role=Message.Role.ASSISTANT)
            .filter(created_at__gt=now - PACE_WINDOW)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
        )
        times = list(started[: max(limit, 1)])
        if len(times) >= limit:
            # Free again when the limit-th newest of them leaves the minute.
            free_at = (times[-1] if times else now) + PACE_WINDOW
            seconds = max(1, math.ceil((free_at - now).total_seconds()))
            raise Refused(
                ngettext(
                    "You have sent %(count)d message in the last minute, the most %(team)s allows.",
                    "You have sent %(count)d messages in the last minute, the most %(team)s allows.",
                    len(times),
                )
                % {"count": len(times), "team": team.name}
                + " "
                + ngettext("Try again in %(seconds)d second.", "Try again in %(seconds)d seconds.", seconds)
                % {"seconds": seconds}
            )


# --- The team admin's page ------------------------------------------------------------


def dollars(amount, places):
    """"$1,234.5600": cut, not rounded, to `places`, so an amount never shows as reached before it is."""
    cut = Decimal(amount).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    return "$" + number_format(cut, decimal_pos=places, force_grouping=True)


def spent(amount):
    """What was spent, for the limits page: fractions of a cent under $1 (as chat.usage.money shows), cents above."""
    return dollars(amount, 4 if abs(amount) < 1 else 2)


@dataclass
class MemberUsage:
    """One row of the limits page: a member, what they used this month, their own budgets' meters."""

    membership: Membership
    tokens: int
    cost: Decimal
    meters: list[Meter]
    storage: int = 0  # bytes of their attachments in the team (chat.attachments.storage_used)
    form: object = None  # the view's form for the member's own limits

    @property
    def cost_text(self):
        return spent(self.cost)


def member_rows(team, memberships):
    """The limits page's table: each member with their usage this month, their own meters, and their storage."""
    used = used_by_member(team)
    stored = storage_by_member(team)
    rows = []
    for membership in memberships:
        tokens, cost = used.get(membership.user_id, (0, Decimal(0)))
        own = []
        if membership.monthly_token_limit is not None:
            own.append(Meter(MEMBER, TOKENS, team, tokens, membership.monthly_token_limit))
        if membership.monthly_cost_limit is not None:
            own.append(Meter(MEMBER, COST, team, cost, membership.monthly_cost_limit))
        rows.append(MemberUsage(membership, tokens, cost, own, storage=stored.get(membership.user_id, 0)))
    return rows


def storage_by_member(team):
    """{member's id: bytes of their attachments in the team}, every row counted, in one query."""
    rows = Attachment.objects.filter(conversation__team=team).values("owner_id").annotate(total=Sum("size"))
    return {row["owner_id"]: row["total"] for row in rows}


def team_usage(team):
    """(tokens, cost, meters) of the whole team this month, for its admin."""
    tokens, cost = used_this_month(team)
    found = []
    if team.monthly_token_limit is not None:
        found.append(Meter(TEAM, TOKENS, team, tokens, team.monthly_token_limit))
    if team.monthly_cost_limit is not None:
        found.append(Meter(TEAM, COST, team, cost, team.monthly_cost_limit))
    return tokens, cost, found
