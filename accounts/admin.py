from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _, ngettext
from django.views.decorators.debug import sensitive_post_parameters

from accounts.forms import ApiKeyForm
from accounts.models import ApiKey, KeyEvent, Membership, Team, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    fieldsets = DjangoUserAdmin.fieldsets + ((_("Preferences"), {"fields": ("language", "time_zone")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "members_may_add_keys", "review_enabled", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "joined_at"]
    list_filter = ["role", "team"]
    autocomplete_fields = ["user", "team"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are write-only here too: the form takes a secret, the pages show only its last four."""

    form = ApiKeyForm
    list_display = ["label", "team", "owner", "kind", "masked", "api_format", "created_at", "revoked_at"]
    list_filter = ["kind", "api_format", "team", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["label", "team__name"]
    autocomplete_fields = ["owner"]
    actions = ["revoke"]
    fieldsets = [
        (None, {"fields": ["team", "owner", "label", "api_format", "base_url_preset", "custom_base_url", "secret"]}),
        (_("Record"), {"fields": ["kind", "masked", "created_by", "created_at", "revoked_at"]}),
    ]
    readonly_fields = ["kind", "masked", "created_by", "created_at", "revoked_at"]

    def get_fieldsets(self, request, obj=None):
        return self.fieldsets if obj else self.fieldsets[:1]

    @admin.display(description=_("key"))
    def masked(self, obj):
        return obj.masked

    # Keep the secret out of Django's error reports, whatever DEBUG says.
    @method_decorator(sensitive_post_parameters("secret"))
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change or form.cleaned_data.get("secret"):  # the keys' audit trail, as on the team's pages
            obj.record(KeyEvent.Action.REPLACE if change else KeyEvent.Action.ADD, request.user)
        for warning in obj.warnings():
            messages.warning(request, warning)

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request, queryset):
        keys = list(queryset.active())
        for key in keys:
            key.revoke(actor=request.user)
        self.message_user(
            request,
            ngettext("%(count)d key revoked.", "%(count)d keys revoked.", len(keys)) % {"count": len(keys)},
            messages.SUCCESS,
        )
