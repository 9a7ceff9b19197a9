from datetime import date

from django import forms
from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Team, User
from chat import mimo
from chat.models import Message, ToolCall


def model_choices():
    today = date.today()
    return [(model.id, model.id) for model in mimo.CHAT_MODELS.values() if not model.is_deprecated(today)]


class SendForm(forms.Form):
    """What the composer sends over the socket; htmx's HEADERS field is ignored."""

    text = forms.CharField(label=_("Message"), max_length=100_000, strip=True)
    model = forms.ChoiceField(label=_("Model"), choices=model_choices)
    thinking = forms.BooleanField(label=_("Thinking"), required=False)
    web_search = forms.BooleanField(label=_("Web search"), required=False)
    system_prompt = forms.CharField(
        label=_("System prompt"), max_length=20_000, required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4})
    )


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
