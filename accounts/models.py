"""People, teams and the team's MiMo API keys."""

import ipaddress
import json
import secrets
import socket
import zoneinfo
from datetime import timedelta
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.http import Http404
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext, gettext_lazy as _, pgettext_lazy
from django.views.decorators.debug import sensitive_variables

from accounts import crypto
from chat.mimo.transport import pin_addresses


def validate_time_zone(value):
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(_("“%(value)s” is not a time zone."), params={"value": value}, code="invalid")


class User(AbstractUser):
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=settings.LANGUAGES,
        blank=True,
        help_text=_("Empty: the browser’s language."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_("Empty: the server’s time zone."),
    )
    class Theme(models.TextChoices):
        SYSTEM = "system", _("Same as the device")
        LIGHT = "light", _("Light")
        DARK = "dark", _("Dark")

    # base.html puts it on <html data-theme>, so the page is drawn in it from the first paint.
    theme = models.CharField(_("theme"), max_length=6, choices=Theme, default=Theme.SYSTEM)
    # Set when a team admin creates the account with a one-time password: every page
    # leads to the password change until the member has chosen their own.
    must_change_password = models.BooleanField(_("must change password"), default=False)

    @sensitive_variables("password")
    def set_one_time_password(self):
        """A fresh random password the member must replace at first sign-in; returned once, stored hashed."""
        password = secrets.token_urlsafe(12)
        self.set_password(password)
        self.must_change_password = True
        return password

    @cached_property
    def is_reviewer(self):
        """Shows the Review link: a reviewer of some team, or a superuser (who may review any team)."""
        return self.is_superuser or self.memberships.filter(role=Membership.Role.REVIEWER).exists()

    @cached_property
    def administered_teams(self):
        """The teams this member is an admin of: the navigation offers "Manage team" for each."""
        administered = Team.objects.filter(memberships__user=self, memberships__role=Membership.Role.ADMIN)
        return list(administered.order_by("name"))


class TeamQuerySet(models.QuerySet):
    def reviewable_by(self, user):
        """Teams whose conversations this user may review: review switched on, and the user one of its
        reviewers. Superusers may review any such team, through the same reason and record as reviewers."""
        teams = self.filter(review_enabled=True)
        if user.is_superuser:
            return teams
        return teams.filter(memberships__user=user, memberships__role=Membership.Role.REVIEWER)


class Team(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    members_may_add_keys = models.BooleanField(
        _("members may add personal keys"),
        default=False,
        help_text=_("A personal key is used only by the member who added it."),
    )
    review_enabled = models.BooleanField(
        _("reviewers may open members' conversations"),
        default=True,
        help_text=_("Each opening is recorded with its reason, and the conversation's owner sees it."),
    )
    default_key = models.ForeignKey(
        "ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("default key"),
        help_text=_("The team key new conversations use."),
    )
    members_may_choose_key = models.BooleanField(
        _("members may choose among the team’s keys"),
        default=False,
        help_text=_("Otherwise every conversation uses the default key."),
    )
    # Budgets: per calendar month, for the whole team; Membership holds each member's own.
    # Empty means no limit. Costs are in the price table's currency (USD).
    monthly_token_limit = models.PositiveBigIntegerField(_("tokens a month, whole team"), null=True, blank=True)
    monthly_cost_limit = models.DecimalField(
        _("cost a month, whole team (USD)"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    # Pace, for each member: so one member cannot use up the account's MiMo rate limit
    # (100 requests a minute per model) for everyone. Empty means no limit.
    messages_per_minute = models.PositiveSmallIntegerField(_("messages a minute, per member"), null=True, blank=True)
    streams_at_once = models.PositiveSmallIntegerField(
        _("answers streaming at once, per member"), null=True, blank=True
    )
    # Storage for each member's attachments in the team, unless a member has a quota of their own
    # (Membership.storage_quota_mib). Empty means no limit.
    storage_quota_mib = models.PositiveIntegerField(_("storage for attachments, per member (MiB)"), null=True, blank=True)
    # The largest file a member may attach, below the server's own limit (MIMOWEB_ATTACHMENT_MAX_BYTES).
    # Empty means the server's.
    largest_file_mib = models.PositiveIntegerField(_("largest attached file (MiB)"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    members = models.ManyToManyField(User, through="Membership", related_name="teams")

    objects = TeamQuerySet.as_manager()

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def admins(self):
        return self.memberships.filter(role=Membership.Role.ADMIN)


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", _("member")
        # Reads the team's conversations, each opening recorded with its reason (when the team allows review).
        REVIEWER = "reviewer", _("reviewer")
        ADMIN = "admin", _("team admin")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("team"))
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=20, choices=Role, default=Role.MEMBER)
    joined_at = models.DateTimeField(_("joined"), auto_now_add=True)
    # This member's own monthly budget inside the team's; empty means no limit of their own.
    monthly_token_limit = models.PositiveBigIntegerField(_("tokens a month"), null=True, blank=True)
    monthly_cost_limit = models.DecimalField(
        _("cost a month (USD)"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    # This member's storage for attachments in the team, in place of the team's; empty: the team's.
    storage_quota_mib = models.PositiveIntegerField(_("storage (MiB)"), null=True, blank=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def storage_quota_bytes(self):
        """How much this member's attachments in the team may hold: their own quota, else the
        team's for each member; None for no limit."""
        mib = self.storage_quota_mib if self.storage_quota_mib is not None else self.team.storage_quota_mib
        return None if mib is None else mib * 1024 * 1024

    def change_role(self, role):
        """Give this member another role; the team's last admin stays one."""
        with transaction.atomic():
            self._lock_team_unless_last_admin(leaving=role != self.Role.ADMIN)
            self.role = role
            self.save(update_fields=["role"])

    def remove(self, actor=None):
        """Take this member out of the team. Only the membership goes: their conversations stay.

        Their personal keys in this team are revoked: a key is only ever used inside its team.
        """
        with transaction.atomic():
            self._lock_team_unless_last_admin(leaving=True)
            for key in ApiKey.objects.active().filter(team_id=self.team_id, owner_id=self.user_id):
                key.revoke(actor=actor)
            self.delete()

    def _lock_team_unless_last_admin(self, leaving):
        # The team row is locked first, so two admins demoting each other at once cannot
        # both see "another admin remains" and leave the team with none.
        Team.objects.select_for_update().filter(pk=self.team_id).first()
        if leaving and self.role == self.Role.ADMIN and not self.team.admins().exclude(pk=self.pk).exists():
            raise ValidationError(
                _("%(user)s is the last team admin of %(team)s. Make another member team admin first."),
                params={"user": self.user.get_username(), "team": self.team},
                code="last_admin",
            )


def get_team_administered_by(user, team_id):
    """The team, if this user is one of its admins: outsiders get a 404, its other members a 403."""
    membership = Membership.objects.filter(user=user, team_id=team_id).select_related("team").first()
    if membership is None:
        raise Http404
    if membership.role != Membership.Role.ADMIN:
        raise PermissionDenied
    return membership.team


def get_membership_administered_by(user, team_id, membership_id):
    """A membership of a team this user administers (see get_team_administered_by); 404 if not in that team."""
    team = get_team_administered_by(user, team_id)
    membership = team.memberships.select_related("user", "team").filter(pk=membership_id).first()
    if membership is None:
        raise Http404
    return membership


def get_invitation_administered_by(user, team_id, invitation_id):
    """An invitation of a team this user administers (see get_team_administered_by); 404 if not in that team."""
    team = get_team_administered_by(user, team_id)
    invitation = team.invitations.select_related("team").filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404
    return invitation


def get_key_managed_by(user, team_id, key_id, *, personal):
    """A key this user manages: a team key of a team they administer (see get_team_administered_by),
    or, with `personal`, one of their own personal keys in a team they belong to. Anything else is a 404:
    nobody but its owner learns that a personal key exists."""
    if personal:
        key = ApiKey.objects.filter(pk=key_id, team_id=team_id, owner=user, team__memberships__user=user)
        key = key.select_related("team").first()
    else:
        team = get_team_administered_by(user, team_id)
        key = team.api_keys.team_keys().select_related("team").filter(pk=key_id).first()
    if key is None:
        raise Http404
    return key


def new_invitation_token():
    return secrets.token_urlsafe(32)


class InvitationQuerySet(models.QuerySet):
    def open(self):
        """Invitations that can still be accepted: not used, not withdrawn, not expired."""
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


class Invitation(models.Model):
    """A link a team admin hands to a colleague: opening it before it expires makes them a member."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("team"))
    role = models.CharField(_("role"), max_length=20, choices=Membership.Role, default=Membership.Role.MEMBER)
    # The secret part of the link: 256 random bits, so links cannot be guessed.
    token = models.CharField(max_length=64, unique=True, default=new_invitation_token, editable=False)
    note = models.CharField(_("for"), max_length=200, blank=True, help_text=_("Whom the link is for, as a reminder."))
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")

    def __str__(self):
        return f"Invitation to {self.team} ({self.role})"

    @property
    def is_open(self):
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()

    def accept(self, user):
        """Make the user a member with the invited role, and use the link up.

        The conditional UPDATE is what makes a double submit safe: of two requests,
        only one finds accepted_at still empty; the other changes nothing.
        """
        with transaction.atomic():
            if Membership.objects.filter(team_id=self.team_id, user=user).exists():
                raise ValidationError(
                    _("You are already a member of %(team)s."), params={"team": self.team}, code="member"
                )
            now = timezone.now()
            if not Invitation.objects.open().filter(pk=self.pk).update(accepted_by=user, accepted_at=now):
                raise ValidationError(_("This invitation link cannot be used any more."), code="closed")
            membership = Membership.objects.create(team_id=self.team_id, user=user, role=self.role)
        self.accepted_by, self.accepted_at = user, now
        return membership

    def revoke(self):
        if self.revoked_at is None and self.accepted_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


# --- API keys ----------------------------------------------------------------

PAY_AS_YOU_GO_URL = "https://api.xiaomimimo.com"
TOKEN_PLAN_URLS = {
    "https://token-plan-cn.xiaomimimo.com",
    "https://token-plan-sgp.xiaomimimo.com",
    "https://token-plan-ams.xiaomimimo.com",
}
# Base URLs are stored as the host root; the client appends /v1/... or /anthropic/v1/...
BASE_URL_PRESETS = [
    (PAY_AS_YOU_GO_URL, _("Pay-as-you-go (api.xiaomimimo.com)")),
    ("https://token-plan-cn.xiaomimimo.com", _("Token Plan, China")),
    ("https://token-plan-sgp.xiaomimimo.com", _("Token Plan, Singapore")),
    ("https://token-plan-ams.xiaomimimo.com", _("Token Plan, Europe (Amsterdam)")),
]


def is_allowed_upstream_host(host):
    return host.lower() in {h.lower() for h in settings.MIMOWEB_UPSTREAM_ALLOWED_HOSTS}


# IPv6 ranges that carry an IPv4 address: a packet to one reaches that IPv4
# address (through a translator, a tunnel or the host's own stack), so the
# address is as public as the IPv4 address it embeds.
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d, deprecated but still routed by some stacks
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, ::ffff:0:a.b.c.d
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known NAT64 prefix, RFC 6052
# The local-use NAT64 prefix (RFC 8215) translates to a network's own IPv4
# addresses, at a position its operator chooses: never public.
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
TEREDO = ipaddress.IPv6Network("2001::/32")
# Private IPv6 ranges: unique-local (fc00::/7, which the ipaddress module
# knows) and the deprecated site-local (fec0::/10, which it counts as global).
NOT_PUBLIC_IPV6 = (ipaddress.IPv6Network("fc00::/7"), ipaddress.IPv6Network("fec0::/10"), LOCAL_NAT64)


def embedded_ipv4_addresses(ip):
    """The IPv4 addresses an IPv6 address reaches through, or None when it embeds none."""
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip in IPV4_COMPATIBLE or ip in IPV4_TRANSLATED or ip in NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in SIXTOFOUR:
        return [ip.sixtofour]
    if ip in TEREDO:
        server, client = ip.teredo  # the client's address is stored inverted; the module turns it back
        return [server, client]
    return None


def is_public_address(ip):
    """Whether an address is on the public internet: not private, loopback, link-local, reserved or multicast,
    and an IPv6 address that embeds an IPv4 address only when that one is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in NOT_PUBLIC_IPV6):
            return False
        embedded = embedded_ipv4_addresses(ip)
        if embedded is not None:
            return all(is_public_address(address) for address in embedded)
    return ip.is_global and not ip.is_multicast


def public_addresses(host):
    """The host's addresses, when every one of them is public (see is_public_address).

    Refusing the others keeps a custom base URL from turning mimoweb into a
    probe of its own network (SSRF), and from sending a team's key to a host
    inside it.
    """
    try:
        addresses = {info[4][0].split("%")[0] for info in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        raise ValidationError(_("The host %(host)s cannot be found."), params={"host": host}, code="unresolvable")
    if not all(is_public_address(ipaddress.ip_address(address)) for address in addresses):
        raise ValidationError(
            _(
                "The host %(host)s is on a private, loopback or link-local network. "
                "Ask the operator to list it in MIMOWEB_UPSTREAM_ALLOWED_HOSTS if it is meant to be used."
            ),
            params={"host": host},
            code="internal",
        )
    return sorted(addresses)


def validate_base_url(url):
    """A base URL a key may be sent to: a preset, or https to a public host, or an operator-listed host.

    Returns the (host, addresses) it checked, for the connection to use; None
    for a preset or an operator-listed host, which are not looked up.
    """
    if url in {preset for preset, _label in BASE_URL_PRESETS}:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # raises on a malformed port
    except ValueError:
        parts = None
    if not parts or not parts.hostname or parts.username or parts.password or parts.query or parts.fragment or "\n" in url:
        raise ValidationError(_("Enter a base URL like https://api.example.com."), code="invalid")
    host = parts.hostname
    if is_allowed_upstream_host(host):
        if parts.scheme not in ("https", "http"):
            raise ValidationError(_("The base URL must start with https://."), code="scheme")
        return None
    if parts.scheme != "https":
        raise ValidationError(_("The base URL must start with https://."), code="scheme")
    return host, public_addresses(host)


def normalise_base_url(url):
    return url.strip().rstrip("/")


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)

    def team_keys(self):
        return self.filter(owner__isnull=True)

    def usable_by(self, user, team):
        """Active keys this member may run their conversations with: their own personal keys, and the
        team's keys while the team lets members choose. `user` may be a user or its id."""
        allowed = models.Q(owner=user)
        if team.members_may_choose_key:
            allowed |= models.Q(owner__isnull=True)
        return self.active().filter(allowed, team=team)

    def with_health(self, since):
        """Each key with what its page shows, in one query: last answer, answers and failures since
        `since`, latest failed answer, and latest test (from the audit trail)."""
        from chat.models import Message  # chat's models import these ones

        answers = models.Q(messages__role=Message.Role.ASSISTANT)
        recent = answers & models.Q(messages__created_at__gte=since) & ~models.Q(messages__status=Message.Status.STREAMING)
        failed = Message.objects.filter(api_key=models.OuterRef("pk"), role=Message.Role.ASSISTANT, status=Message.Status.ERROR)
        failed = failed.order_by("-created_at", "-pk")
        tests = KeyEvent.objects.filter(api_key=models.OuterRef("pk"), action=KeyEvent.Action.TEST).order_by("-at", "-pk")
        return self.annotate(
            last_used_at=models.Max("messages__created_at", filter=answers),
            answers_recent=models.Count("messages", filter=recent),
            failed_recent=models.Count("messages", filter=recent & models.Q(messages__status=Message.Status.ERROR)),
            last_failed_at=models.Subquery(failed.values("created_at")[:1]),
            last_failed_kind=models.Subquery(failed.values("error_kind")[:1]),
            last_test_at=models.Subquery(tests.values("at")[:1]),
            last_test_ok=models.Subquery(tests.values("succeeded")[:1]),
            last_test_latency_ms=models.Subquery(tests.values("latency_ms")[:1]),
            last_test_error_kind=models.Subquery(tests.values("error_kind")[:1]),
        )


class ApiKey(models.Model):
    """A MiMo API key, write-only: once saved, only its last four characters are ever shown."""

    class Format(models.TextChoices):
        OPENAI = "openai", _("OpenAI (chat completions)")
        ANTHROPIC = "anthropic", _("Anthropic (messages)")

    class Kind(models.TextChoices):
        PAY_AS_YOU_GO = "payg", _("pay-as-you-go")
        TOKEN_PLAN = "token_plan", _("Token Plan")
        UNKNOWN = "unknown", _("unknown")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("team"))
    owner = models.ForeignKey(
        User,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="personal_api_keys",
        verbose_name=_("personal key of"),
        help_text=_("Empty: a team key. Set: only this member uses it."),
    )
    label = models.CharField(_("label"), max_length=100)
    api_format = models.CharField(_("API format"), max_length=20, choices=Format, default=Format.OPENAI)
    base_url = models.CharField(_("base URL"), max_length=200, default=PAY_AS_YOU_GO_URL, validators=[validate_base_url])
    kind = models.CharField(_("kind"), max_length=20, choices=Kind, editable=False)
    # The Fernet token of {"base_url", "secret"}: binding the URL into the
    # ciphertext means a key can only ever be opened for the URL it was saved with.
    secret_encrypted = models.TextField(editable=False)
    last_four = models.CharField(_("last four"), max_length=4, editable=False)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, editable=False, related_name="+", verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)
    # Counts the secrets this key has had: replacing the secret (rotation) adds one, and
    # each message records the version that served it (chat.Message.api_key_version).
    secret_version = models.PositiveIntegerField(_("secret version"), default=1, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["team", "label"]

    def __str__(self):
        return f"{self.label} ({self.masked})"

    @property
    def masked(self):
        return f"…{self.last_four}" if self.last_four else "—"

    @property
    def is_revoked(self):
        return self.revoked_at is not None

    def clean(self):
        self.base_url = normalise_base_url(self.base_url)
        if self.owner_id and self.team_id:
            if not self.team.members_may_add_keys:
                raise ValidationError({"owner": _("This team does not allow personal keys.")})
            if not Membership.objects.filter(team_id=self.team_id, user_id=self.owner_id).exists():
                raise ValidationError({"owner": _("A personal key’s owner must be a member of its team.")})

    # sensitive_variables: error pages and reports show these locals as stars.
    @sensitive_variables("secret")
    def set_secret(self, secret):
        """Encrypt the secret for this key's base URL; call again whenever the base URL changes."""
        secret = secret.strip()
        self.kind = kind_of_secret(secret)
        self.last_four = secret[-4:]
        self.secret_encrypted = crypto.encrypt(json.dumps({"base_url": self.base_url, "secret": secret}))

    @sensitive_variables("sealed")
    def decrypt_secret(self):
        """The plaintext key, for the request to this key's own base URL and nothing else."""
        if self.is_revoked:
            raise PermissionError(f"API key {self} is revoked.")
        try:
            sealed = json.loads(crypto.decrypt(self.secret_encrypted))
        except crypto.UndecryptableSecret as e:
            raise crypto.UndecryptableSecret(f"API key {self}: {e}") from None
        if sealed["base_url"] != self.base_url:
            raise PermissionError(f"API key {self} was saved for another base URL; enter the key again.")
        return sealed["secret"]

    def secret_for_request(self):
        """The plaintext key for a request made now: its base URL is checked again first, since DNS
        may have changed since the key was saved, and the connection is pinned to the addresses
        checked (a name resolving elsewhere a moment later is not followed). Answers, titles and
        key tests all open keys here."""
        checked = validate_base_url(self.base_url)
        if checked:
            pin_addresses(*checked)
        return self.decrypt_secret()

    async def asecret_for_request(self):
        """`secret_for_request` from async code, in a thread of its own: it may wait on DNS, and it must
        not wait in the database thread, where every socket's queries would wait behind it."""
        return await sync_to_async(self.secret_for_request, thread_sensitive=False)()

    def reencrypt(self):
        self.secret_encrypted = crypto.reencrypt(self.secret_encrypted)
        self.save(update_fields=["secret_encrypted"])

    def revoke(self, actor=None):
        """Revoke the key for good (and record who did); a revoked default key stops being the default."""
        if self.is_revoked:
            return
        with transaction.atomic():
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
            Team.objects.filter(pk=self.team_id, default_key=self).update(default_key=None)
            self.record(KeyEvent.Action.REVOKE, actor)

    @sensitive_variables("secret")
    def replace_secret(self, secret, actor=None):
        """Rotation: a new secret for the same key. Messages keep the version that served them, and
        the audit row keeps each version's last four."""
        with transaction.atomic():
            current = ApiKey.objects.select_for_update().get(pk=self.pk)
            self.set_secret(secret)
            self.secret_version = current.secret_version + 1
            self.save(update_fields=["secret_encrypted", "last_four", "kind", "secret_version"])
            self.record(KeyEvent.Action.REPLACE, actor)

    def make_default(self, actor=None):
        """This team key becomes the one the team's conversations use unless a member chose another."""
        with transaction.atomic():
            Team.objects.filter(pk=self.team_id).update(default_key=self)
            self.record(KeyEvent.Action.DEFAULT, actor)

    def record(self, action, actor, **outcome):
        """One row of the keys' audit trail: the key's label and last four as they are now, never the secret."""
        return KeyEvent.objects.create(
            team_id=self.team_id,
            api_key=self,
            key_label=self.label,
            actor=actor,
            action=action,
            last_four=self.last_four,
            secret_version=self.secret_version,
            **outcome,
        )

    def last_four_of_version(self, version):
        """The last four of the secret that was version `version` of this key, from the audit trail."""
        if version == self.secret_version:
            return self.last_four
        event = self.events.filter(
            secret_version=version, action__in=[KeyEvent.Action.ADD, KeyEvent.Action.REPLACE]
        ).first()
        return event.last_four if event else ""

    def warnings(self):
        """What mimo-api.md warns about this key and base URL, in the user's language."""
        found = []
        if self.kind == self.Kind.TOKEN_PLAN:
            found.append(
                gettext(
                    "This is a Token Plan key (tp-). Xiaomi allows Token Plan quota only inside coding tools; "
                    "using it from an application like mimoweb can get the subscription suspended. "
                    "Use a pay-as-you-go key (sk-) on api.xiaomimimo.com."
                )
            )
            if self.base_url == PAY_AS_YOU_GO_URL:
                found.append(gettext("A Token Plan key does not work on the pay-as-you-go host: MiMo will answer 401."))
        if self.kind == self.Kind.PAY_AS_YOU_GO and self.base_url in TOKEN_PLAN_URLS:
            found.append(gettext("A pay-as-you-go key does not work on a Token Plan host: MiMo will answer 401."))
        if self.kind == self.Kind.UNKNOWN:
            found.append(gettext("MiMo keys start with sk- (pay-as-you-go) or tp- (Token Plan); this one starts with neither."))
        return found


def kind_of_secret(secret):
    if secret.startswith("sk-"):
        return ApiKey.Kind.PAY_AS_YOU_GO
    if secret.startswith("tp-"):
        return ApiKey.Kind.TOKEN_PLAN
    return ApiKey.Kind.UNKNOWN


class KeyEvent(models.Model):
    """The audit trail of a team's keys: who added, tested, replaced, revoked or made default which key.

    Holds the key's last four characters at the time, never more of the secret.
    """

    class Action(models.TextChoices):
        ADD = "add", _("added")
        TEST = "test", _("tested")
        REPLACE = "replace", _("replaced the secret")
        REVOKE = "revoke", pgettext_lazy("an action in the keys' audit trail", "revoked")
        DEFAULT = "default", _("made default")
        UNDEFAULT = "undefault", _("no longer default")  # the team went back to its oldest active key

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="key_events")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, related_name="events")
    key_label = models.CharField(_("key"), max_length=100)  # kept if the key row is ever deleted
    actor = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("by"))
    action = models.CharField(_("action"), max_length=20, choices=Action)
    last_four = models.CharField(max_length=4, blank=True)  # of the secret in use after the action
    secret_version = models.PositiveIntegerField(null=True)
    # A test's outcome: whether the key worked, how long the check took, and the error kind if not.
    succeeded = models.BooleanField(null=True)
    latency_ms = models.PositiveIntegerField(null=True)
    error_kind = models.CharField(max_length=40, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["team", "-at"]), models.Index(fields=["api_key", "action", "-at"])]

    def __str__(self):
        return f"{self.actor} {self.action} {self.key_label} at {self.at:%Y-%m-%d %H:%M}"


# --- Sign-in throttling -----------------------------------------------------------


class SignInFailure(models.Model):
    """One failed sign-in. Kept in the database so every server process sees the same count."""

    username = models.CharField(max_length=150, db_index=True)
    address = models.GenericIPAddressField(null=True, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    @classmethod
    def locked_until(cls, username, address):
        """When the account or the address may try again, or None if it may now."""
        window = timedelta(minutes=settings.MIMOWEB_SIGNIN_WINDOW_MINUTES)
        recent = cls.objects.filter(at__gt=timezone.now() - window).order_by("-at")
        limits = [(recent.filter(username__iexact=username), settings.MIMOWEB_SIGNIN_FAILURES_PER_ACCOUNT)]
        if address:
            limits.append((recent.filter(address=address), settings.MIMOWEB_SIGNIN_FAILURES_PER_ADDRESS))
        ends = []
        for failures, limit in limits:
            # Locked while `limit` failures lie within the window: until the
            # limit-th newest of them leaves it.
            times = list(failures.values_list("at", flat=True)[:limit])
            if len(times) >= limit:
                ends.append(times[-1] + window)
        return max(ends, default=None)

    @classmethod
    def record(cls, username, address):
        window = timedelta(minutes=settings.MIMOWEB_SIGNIN_WINDOW_MINUTES)
        cls.objects.filter(at__lt=timezone.now() - window).delete()  # the table stays small
        cls.objects.create(username=username, address=address)

    @classmethod
    def forget(cls, username):
        cls.objects.filter(username__iexact=username).delete()
