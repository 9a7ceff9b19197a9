import uuid
from datetime import date
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Exists, OuterRef, Q
from django.http import QueryDict
from django.utils.formats import number_format
from django.utils.translation import gettext_lazy as _

from accounts.models import PAY_AS_YOU_GO_URL, TOKEN_PLAN_URLS, ApiKey, Membership, Team, User
from chat import attachments, mimo, usage
from chat.mimo.wire import TEMPERATURE_RANGE, TOP_P_RANGE  # MiMo's documented ranges (mimo-api.md §5.1, §6.1)
from chat.models import Attachment, Message, ToolCall, team_default_key


def model_choices():
    today = date.today()
    return [(model.id, model.id) for model in mimo.CHAT_MODELS.values() if not model.is_deprecated(today)]


# Said when an attachment id the composer sent is not one of this member's files waiting in this
# conversation: removed meanwhile (in another tab), sent already, or never theirs.
ATTACHMENT_GONE = _("A file attached to this message can no longer be sent: it was removed or sent already. Remove it and attach it again.")


class AttachmentIdsField(forms.Field):
    """The ids of the attachments sent with a message: the socket's JSON holds one as a string, several as a list."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        values = value if isinstance(value, (list, tuple)) else [value] if value else []
        try:
            return list(dict.fromkeys(uuid.UUID(str(item)) for item in values))
        except ValueError:
            raise forms.ValidationError(ATTACHMENT_GONE) from None


class SendForm(forms.Form):
    """What the composer sends over the socket; htmx's HEADERS field is ignored.

    A message is its text, its attachments, or both. The attachments must be the member's own,
    uploaded to this conversation and not sent yet, and the chosen model and key must take them
    (chat/attachments.py's why_not_sendable, the sentence the composer shows before sending).
    """

    text = forms.CharField(label=_("Message"), max_length=100_000, strip=True, required=False)
    attachments = AttachmentIdsField(required=False)
    model = forms.ChoiceField(label=_("Model"), choices=model_choices)
    thinking = forms.BooleanField(label=_("Thinking"), required=False)
    # The cue beside the switch (composer.js) says why it is off or unavailable.
    web_search = forms.BooleanField(
        label=_("Web search"), required=False, widget=forms.CheckboxInput(attrs={"aria-describedby": "web-search-cue"})
    )
    system_prompt = forms.CharField(
        label=_("System prompt"), max_length=20_000, required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    # Empty: the model's own value. Checked against the chosen model in clean().
    temperature = forms.FloatField(
        label=_("Temperature"), required=False, widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "1.0"})
    )
    top_p = forms.FloatField(
        label=_("Top p"), required=False, widget=forms.NumberInput(attrs={"step": "0.01", "placeholder": "0.95"})
    )
    max_output_tokens = forms.IntegerField(
        label=_("Maximum output tokens"), required=False, widget=forms.NumberInput(attrs={"step": "1"})
    )

    def __init__(self, *args, conversation=None, **kwargs):
        """With a conversation whose owner may choose a key (team keys the team lets members choose
        among, or their own personal keys), the form has a `api_key` field offering only those."""
        super().__init__(*args, **kwargs)
        self.fields["temperature"].widget.attrs.update(min=TEMPERATURE_RANGE[0], max=TEMPERATURE_RANGE[1])
        self.fields["top_p"].widget.attrs.update(min=TOP_P_RANGE[0], max=TOP_P_RANGE[1])
        self.fields["max_output_tokens"].widget.attrs.update(min=1, max=mimo.MOST_OUTPUT_TOKENS)
        self.conversation = conversation
        if conversation is None:
            return
        team = Team.objects.get(pk=conversation.team_id)
        usable = ApiKey.objects.usable_by(conversation.owner_id, team).order_by("owner", "label", "pk")
        if team.members_may_choose_key or usable.exists():
            default = team_default_key(team)
            self.fields["api_key"] = KeyChoiceField(
                label=_("Key"),
                queryset=usable,
                required=False,
                empty_label=(
                    _("The team’s default key: %(key)s") % {"key": key_label(default)}
                    if default
                    else _("The team’s default key (none yet)")
                ),
                error_messages={"invalid_choice": _("That key cannot be used in this conversation. Choose another one.")},
            )
            self.default_key = default

    def clean_attachments(self):
        ids = self.cleaned_data["attachments"]
        if not ids:
            return []
        if self.conversation is None:
            raise forms.ValidationError(ATTACHMENT_GONE)
        waiting = Attachment.objects.filter(
            pk__in=ids, conversation=self.conversation, owner_id=self.conversation.owner_id, message__isnull=True
        )
        found = list(waiting)
        if len(found) != len(ids):
            raise forms.ValidationError(ATTACHMENT_GONE)
        return found

    def chosen_key(self):
        """The key the message would go through: the one chosen in the form, else the conversation's."""
        if "api_key" in self.fields:
            return self.cleaned_data.get("api_key") or self.default_key
        return self.conversation.key_for_next_turn() if self.conversation else None

    def clean(self):
        data = super().clean()
        if "text" in data and "attachments" in data and not data["text"] and not data["attachments"]:
            self.add_error("text", forms.ValidationError(self.fields["text"].error_messages["required"], code="required"))
        if "model" not in data:
            return data
        model = mimo.get_model(data["model"])
        if data.get("attachments"):
            key = self.chosen_key()
            if reason := attachments.why_not_sendable(data["attachments"], model, key.api_format if key else ""):
                self.add_error("attachments", reason)
        ranges = {
            "temperature": (*TEMPERATURE_RANGE, _("Temperature")),
            "top_p": (*TOP_P_RANGE, _("Top p")),
            "max_output_tokens": (1, model.max_output_tokens, _("Maximum output tokens")),
        }
        for name, (low, high, label) in ranges.items():
            value = data.get(name)
            if value is not None and not low <= value <= high:
                self.add_error(
                    name,
                    _("%(name)s must be between %(low)s and %(high)s for %(model)s.")
                    % {"name": label, "low": plain_number(low), "high": plain_number(high), "model": model.id},
                )
        return data


def plain_number(value):
    """0.0 as "0", 1.5 as "1.5", in the active language's format."""
    return number_format(int(value) if value == int(value) else value)


def key_plan(key):
    """Where a key is sent, in a word: MiMo's pay-as-you-go, its Token Plan, or the host of a custom base URL."""
    if key.base_url == PAY_AS_YOU_GO_URL:
        return _("pay-as-you-go")
    if key.base_url in TOKEN_PLAN_URLS:
        return _("Token Plan")
    return urlsplit(key.base_url).hostname or key.base_url


def key_label(key):
    """"Acme production · pay-as-you-go · …1234": its label, plan and last four only, never more of the secret."""
    label = f"{key.label} · {key_plan(key)} · {key.masked}"
    if key.owner_id:
        return _("%(key)s (your own)") % {"key": label}
    return label


class KeyChoiceField(forms.ModelChoiceField):
    """Keys by label, plan and last four only; a personal key says so."""

    def label_from_instance(self, key):
        return key_label(key)


class RetryForm(forms.Form):
    """Regenerate an answer (Retry, for one that failed): a new version of it."""

    message_id = forms.IntegerField(min_value=1)


class EditForm(forms.Form):
    """An edited question: a new version of it, answered anew."""

    message_id = forms.IntegerField(min_value=1)
    text = forms.CharField(label=_("Message"), max_length=100_000, strip=True)


# --- Review ---------------------------------------------------------------------------


class ReviewFilterForm(forms.Form):
    """The Review list's filters, read from the query string; each narrows the reviewable conversations."""

    STATUSES = {
        "problem": [Message.Status.ERROR, Message.Status.STOPPED, Message.Status.INTERRUPTED],
        "error": [Message.Status.ERROR],
        "stopped": [Message.Status.STOPPED],
        "interrupted": [Message.Status.INTERRUPTED],
    }

    team = forms.ModelChoiceField(label=_("Team"), queryset=Team.objects.none(), required=False, empty_label=_("All"))
    member = forms.ModelChoiceField(label=_("Member"), queryset=User.objects.none(), required=False, empty_label=_("All"))
    model = forms.ChoiceField(label=_("Model"), required=False)
    started_from = forms.DateField(label=_("Started from"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    started_until = forms.DateField(label=_("until"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    status = forms.ChoiceField(
        label=_("Answers"),
        required=False,
        choices=[
            ("", _("All")),
            ("problem", _("with an error, stopped or interrupted")),
            ("error", _("with an error")),
            ("stopped", _("stopped")),
            ("interrupted", _("interrupted")),
        ],
    )
    used_tools = forms.BooleanField(label=_("Used tools"), required=False)
    min_tokens = forms.IntegerField(label=_("At least this many tokens"), required=False, min_value=0)

    def __init__(self, teams, conversations, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams
        self.fields["member"].queryset = User.objects.filter(memberships__team__in=teams).distinct().order_by("username")
        used = set(conversations.values_list("model", flat=True).distinct())
        self.fields["model"].choices = [("", _("All"))] + [(m, m) for m in sorted(used | mimo.CHAT_MODELS.keys())]

    def clean(self):
        data = super().clean()
        if data.get("started_from") and data.get("started_until") and data["started_from"] > data["started_until"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data

    def filter(self, conversations):
        data = self.cleaned_data
        if data["team"]:
            conversations = conversations.filter(team=data["team"])
        if data["member"]:
            conversations = conversations.filter(owner=data["member"])
        if data["model"]:
            ran_with = Message.objects.filter(conversation=OuterRef("pk"), model=data["model"])
            conversations = conversations.filter(Q(model=data["model"]) | Exists(ran_with))
        if data["started_from"]:
            conversations = conversations.filter(created_at__date__gte=data["started_from"])
        if data["started_until"]:
            conversations = conversations.filter(created_at__date__lte=data["started_until"])
        if data["status"]:
            ended = Message.objects.filter(conversation=OuterRef("pk"), status__in=self.STATUSES[data["status"]])
            conversations = conversations.filter(Exists(ended))
        if data["used_tools"]:
            conversations = conversations.filter(Exists(ToolCall.objects.filter(message__conversation=OuterRef("pk"))))
        if data["min_tokens"] is not None:
            conversations = conversations.filter(total_tokens__gte=data["min_tokens"])
        return conversations


REASON_MIN_LENGTH = 10


class ReviewReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Why are you opening this conversation?"),
        help_text=_("Its owner sees your name, the time and this reason."),
        min_length=REASON_MIN_LENGTH,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={
            "required": _("Give a reason for opening this conversation."),
            "min_length": _("Give a reason of at least %(limit_value)d characters: its owner will read it."),
        },
    )


class TeamReviewForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["review_enabled"]


# --- Usage and cost ----------------------------------------------------------------------


class UsageForm(forms.Form):
    """The usage pages' range (default: this calendar month), stack and, on a member's own page, team.

    Read from the query string. A bad range is reported and the default range shown instead.
    """

    # type=date inputs want ISO dates whatever the language's own date format.
    start = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    end = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    team = forms.ModelChoiceField(label=_("Team"), queryset=Team.objects.none(), required=False, empty_label=_("All teams"))
    # The stack switch's links set it; an unknown one stacks by the first dimension rather than losing the range.
    by = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, data, *, dimensions, teams=None):
        # Always bound, the default range filled in where none was asked, so the date inputs show the range shown.
        data = data.copy() if data is not None else QueryDict(mutable=True)
        for name, day in zip(("start", "end"), usage.this_month()):
            if not data.get(name):
                data[name] = day.isoformat()
        super().__init__(data)
        self.dimensions = dimensions
        if teams is None:
            del self.fields["team"]
        else:
            self.fields["team"].queryset = teams

    def clean_by(self):
        by = self.cleaned_data["by"]
        return by if by in self.dimensions else self.dimensions[0]

    def clean(self):
        data = super().clean()
        if "start" in self.errors or "end" in self.errors:
            return data
        start, end = data["start"], data["end"]
        if start > end:
            raise forms.ValidationError(_("The start date is after the end date."), code="reversed")
        if (end - start).days + 1 > usage.MAX_DAYS:
            raise forms.ValidationError(
                _("A range can be at most %(days)d days long."), params={"days": usage.MAX_DAYS}, code="too_long"
            )
        return data

    def period(self):
        """The range asked for, or this calendar month when none was or it was wrong."""
        if self.is_valid():
            return self.cleaned_data["start"], self.cleaned_data["end"]
        return usage.this_month()

    def stack_by(self):
        if self.is_valid() or "by" in self.cleaned_data:
            return self.cleaned_data["by"]
        return self.dimensions[0]

    def chosen_team(self):
        if "team" in self.fields and (self.is_valid() or "team" not in self.errors):
            return self.cleaned_data.get("team")
        return None


# --- Budgets and pace (chat/limits.py) ------------------------------------------------------


def set_minimum(form, names, minimum):
    """Below the models' own checks: no negative cost, and a pace of at least 1 (0 would stop every send)."""
    for name in names:
        form.fields[name].validators.append(MinValueValidator(minimum))
        form.fields[name].widget.attrs["min"] = str(minimum)


class TeamLimitsForm(forms.ModelForm):
    """The team's monthly budgets and each member's pace; an empty field means no limit."""

    class Meta:
        model = Team
        fields = [
            "monthly_token_limit", "monthly_cost_limit", "messages_per_minute", "streams_at_once", "storage_quota_mib",
            "largest_file_mib",
        ]  # fmt: skip
        help_texts = {
            "storage_quota_mib": _(
                "What each member’s attached files may take in all, unless the member has a quota of their own below."
            ),
            "monthly_token_limit": _("Prompt and answer tokens of everyone in the team, this calendar month."),
            "monthly_cost_limit": _("At the price in force when each answer ran."),
            "messages_per_minute": _("Each member; MiMo allows the whole account 100 requests a minute per model."),
            "streams_at_once": _("Each member, across all of their conversations."),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        set_minimum(self, ["monthly_cost_limit"], 0)
        set_minimum(self, ["messages_per_minute", "streams_at_once", "largest_file_mib"], 1)
        # No higher than the server's own limit, which this can only lower.
        server_most = settings.MIMOWEB_ATTACHMENT_MAX_BYTES // (1024 * 1024)
        self.fields["largest_file_mib"].validators.append(MaxValueValidator(server_most))
        self.fields["largest_file_mib"].widget.attrs["max"] = str(server_most)
        self.fields["largest_file_mib"].help_text = _(
            "The largest file a member may attach, up to %(most)s MiB, this server’s limit. Empty: %(most)s MiB."
        ) % {"most": server_most}


class MemberLimitsForm(forms.ModelForm):
    """One member's own monthly budget inside the team's; empty means none of their own."""

    class Meta:
        model = Membership
        fields = ["monthly_token_limit", "monthly_cost_limit", "storage_quota_mib"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        set_minimum(self, ["monthly_cost_limit"], 0)
