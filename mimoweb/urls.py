from django.contrib import admin
from django.urls import include, path

from accounts.forms import AdminSignInForm

# The admin's own sign-in page is throttled like ours.
admin.site.login_form = AdminSignInForm
admin.site.site_header = "mimoweb"
admin.site.site_title = "mimoweb"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("chat.urls")),
]
