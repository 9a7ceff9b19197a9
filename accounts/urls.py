from django.contrib.auth import views as auth_views
from django.urls import path

from accounts.views import account
from accounts.views import members
from accounts.views import keys
from accounts.forms import SignInForm

urlpatterns = [
    path("", account.start, name="start"),
    path("home/", account.home, name="home"),
    path(
        "accounts/sign-in/",
        auth_views.LoginView.as_view(authentication_form=SignInForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/sign-out/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", members.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("accounts/preferences/", account.preferences, name="preferences"),
    path("language/", account.set_language, name="set_language"),
    path("healthz", account.healthz, name="healthz"),
    # -- Team administration: members and invitations --
    path("teams/<int:team_id>/", members.team, name="team"),
    path("teams/<int:team_id>/members/", members.members, name="team_members"),
    path("teams/<int:team_id>/members/new/", members.create_member, name="team_member_create"),
    path("teams/<int:team_id>/members/<int:membership_id>/role/", members.change_role, name="team_member_role"),
    path("teams/<int:team_id>/members/<int:membership_id>/remove/", members.remove_member, name="team_member_remove"),
    path("teams/<int:team_id>/invitations/", members.create_invitation, name="team_invitation_create"),
    path(
        "teams/<int:team_id>/invitations/<int:invitation_id>/revoke/",
        members.revoke_invitation,
        name="team_invitation_revoke",
    ),
    path("invitations/<str:token>/", members.invitation, name="invitation"),
    # -- Team administration: keys, their tests and audit trail; personal keys --
    path("teams/<int:team_id>/keys/", keys.team_keys, name="team_keys"),
    path("teams/<int:team_id>/keys/settings/", keys.key_settings, name="team_key_settings"),
    path("teams/<int:team_id>/keys/audit/", keys.key_audit, name="key_audit"),
    path("teams/<int:team_id>/keys/<int:key_id>/test/", keys.test_key, name="test_key"),
    path("teams/<int:team_id>/keys/<int:key_id>/replace/", keys.replace_key, name="replace_key"),
    path("teams/<int:team_id>/keys/<int:key_id>/revoke/", keys.revoke_key, name="revoke_key"),
    path("teams/<int:team_id>/keys/<int:key_id>/default/", keys.make_default, name="make_default_key"),
    path("teams/<int:team_id>/my-keys/", keys.personal_keys, name="personal_keys"),
    path("teams/<int:team_id>/my-keys/audit/", keys.personal_key_audit, name="personal_key_audit"),
    path("teams/<int:team_id>/my-keys/<int:key_id>/test/", keys.test_key, {"personal": True}, name="test_personal_key"),
    path(
        "teams/<int:team_id>/my-keys/<int:key_id>/replace/", keys.replace_key, {"personal": True}, name="replace_personal_key"
    ),
    path(
        "teams/<int:team_id>/my-keys/<int:key_id>/revoke/", keys.revoke_key, {"personal": True}, name="revoke_personal_key"
    ),
]
