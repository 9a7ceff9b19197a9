from django.contrib.auth import views as auth_views
from django.urls import path

from accounts.views import account
from accounts.forms import SignInForm

urlpatterns = [
    path("", account.home, name="home"),
    path(
        "accounts/sign-in/",
        auth_views.LoginView.as_view(authentication_form=SignInForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/sign-out/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("accounts/preferences/", account.preferences, name="preferences"),
    path("language/", account.set_language, name="set_language"),
    path("healthz", account.healthz, name="healthz"),
    # -- Team administration: members and invitations --
    # -- Team administration: keys, their tests and audit trail; personal keys --
]
