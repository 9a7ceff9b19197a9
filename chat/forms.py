from datetime import date

from django import forms
from django.utils.translation import gettext_lazy as _

from chat import mimo


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
    message_id = forms.IntegerField(min_value=1)
