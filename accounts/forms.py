import zoneinfo
from datetime import timedelta

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.forms import UserCreationForm
from django.utils import timezone
from django.utils.translation import gettext_lazy as _, ngettext
from django.views.decorators.debug import sensitive_variables

from accounts.models import BASE_URL_PRESETS, ApiKey, SignInFailure, User, normalise_base_url, validate_base_url
from accounts.models import Invitation, Membership, Team


class ThrottledSignIn:
    """Refuses sign-in while the account or the address has failed too often.

    Failures are counted per username whether or not the account exists, so the
    lock-out message tells an attacker nothing about which accounts are real.
    """

    def clean(self):
        username = self.cleaned_data.get("username", "")
        address = self.request.META.get("REMOTE_ADDR") if self.request else None
        if until := SignInFailure.locked_until(username, address):
            minutes = max(1, round((until - timezone.now()).total_seconds() / 60))
            raise forms.ValidationError(
                ngettext(
                    "Too many failed sign-in attempts. Try again in %(minutes)d minute.",
                    "Too many failed sign-in attempts. Try again in %(minutes)d minutes.",
                    minutes,
                ),
                code="locked",
                params={"minutes": minutes},
            )
        try:
            cleaned_data = super().clean()
        except forms.ValidationError:
            SignInFailure.record(username, address)
            raise
        SignInFailure.forget(username)
        return cleaned_data


class SignInForm(ThrottledSignIn, AuthenticationForm):
    pass


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    pass


def time_zone_choices():
    return [("", _("Server default"))] + [(name, name) for name in sorted(zoneinfo.available_timezones())]


class PreferencesForm(forms.ModelForm):
    time_zone = forms.ChoiceField(label=_("Time zone"), choices=time_zone_choices, required=False)

    class Meta:
        model = User
        fields = ["language", "time_zone", "theme"]


CUSTOM_URL = "custom"


class ApiKeyForm(forms.ModelForm):
    """Adds or replaces a key: the secret is write-only and never rendered back."""

    base_url_preset = forms.ChoiceField(
        label=_("Base URL"), choices=BASE_URL_PRESETS + [(CUSTOM_URL, _("Custom URL"))]
    )
    custom_base_url = forms.CharField(
        label=_("Custom base URL"),
        required=False,
        max_length=200,
        help_text=_("Only with “Custom URL”: https://, the host root without /v1."),
    )
    secret = forms.CharField(
        label=_("API key"),
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    class Meta:
        model = ApiKey
        fields = ["team", "owner", "label", "api_format"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["secret"].required = False
            self.fields["secret"].label = _("Replace the API key")
            self.fields["secret"].help_text = _("Leave empty to keep the current key (%(masked)s).") % {
                "masked": self.instance.masked
            }
            presets = {url for url, _label in BASE_URL_PRESETS}
            if self.instance.base_url in presets:
                self.initial["base_url_preset"] = self.instance.base_url
            else:
                self.initial["base_url_preset"] = CUSTOM_URL
                self.initial["custom_base_url"] = self.instance.base_url

    @sensitive_variables("secret")
    def clean_secret(self):
        secret = self.cleaned_data["secret"]
        # Never quote the secret in an error: it would be rendered back to the page.
        if secret and (len(secret) < 8 or any(ch.isspace() for ch in secret)):
            raise forms.ValidationError(_("This does not look like an API key."), code="invalid")
        return secret

    def clean(self):
        cleaned_data = super().clean()
        if cleaned_data.get("base_url_preset") == CUSTOM_URL:
            base_url = normalise_base_url(cleaned_data.get("custom_base_url", ""))
            field = "custom_base_url"
        else:
            base_url = cleaned_data.get("base_url_preset", "")
            field = "base_url_preset"
        try:
            validate_base_url(base_url)
        except forms.ValidationError as e:
            self.add_error(field, e)
            return cleaned_data
        if self.instance.pk and base_url != self.instance.base_url and not cleaned_data.get("secret"):
            self.add_error(
                "secret", _("Enter the key again: a key is only ever sent to the base URL it was saved with.")
            )
        self.instance.base_url = base_url
        return cleaned_data

    @sensitive_variables("secret")
    def save(self, commit=True):
        if secret := self.cleaned_data.get("secret"):
            if self.instance.pk:
                self.instance.secret_version += 1  # a new secret: rotation, as ApiKey.replace_secret
            self.instance.set_secret(secret)
        return super().save(commit)


# --- Keys on the team's pages ------------------------------------------------------------


class TeamKeyForm(ApiKeyForm):
    """Adds a team key or a personal key: the view sets the team and owner on the instance first."""

    class Meta(ApiKeyForm.Meta):
        fields = ["label", "api_format"]


class ReplaceSecretForm(forms.Form):
    """A key's new secret (rotation); the label, format and base URL stay."""

    secret = forms.CharField(
        label=_("New API key"),
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    clean_secret = ApiKeyForm.clean_secret  # the same shape check, and the same care not to quote it


class TeamKeySettingsForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["default_key", "members_may_choose_key", "members_may_add_keys"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["default_key"].queryset = self.instance.api_keys.active().team_keys()
        self.fields["default_key"].empty_label = _("None: the oldest active team key")
        self.fields["default_key"].error_messages["invalid_choice"] = _(
            "That key cannot be the default: only the team’s active team keys can."
        )
        # The box comes before its words (keys.css), so its label ends without a colon.
        for name in ("members_may_choose_key", "members_may_add_keys"):
            self.fields[name].label_suffix = ""


# --- Members and invitations ---------------------------------------------------------


class MemberRoleForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role"]


class InvitationForm(forms.ModelForm):
    days = forms.IntegerField(
        label=_("Valid for (days)"),
        min_value=1,
        max_value=30,
        initial=7,
        error_messages={
            "min_value": _("A link is valid for 1 to 30 days."),
            "max_value": _("A link is valid for 1 to 30 days."),
        },
    )

    class Meta:
        model = Invitation
        fields = ["role", "note"]

    def save(self, commit=True):
        self.instance.expires_at = timezone.now() + timedelta(days=self.cleaned_data["days"])
        return super().save(commit)


class InvitationSignUpForm(UserCreationForm):
    """The account an invited colleague creates: Django's password validators apply."""

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ["username", "first_name", "last_name"]


class NewMemberForm(forms.ModelForm):
    """An account a team admin creates for a colleague, who signs in with a one-time password."""

    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role, initial=Membership.Role.MEMBER)

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email"]

    def clean_username(self):
        # As Django's UserCreationForm: usernames differing only in case would confuse sign-in.
        username = self.cleaned_data["username"]
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(self.instance.unique_error_message(User, ["username"]))
        return username
