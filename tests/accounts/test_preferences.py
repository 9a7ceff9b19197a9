import zoneinfo

from django.test import RequestFactory
from django.utils import timezone

from accounts.middleware import UserPreferencesMiddleware


def test_saved_language_wins_over_browser_and_cookie(client, bob):
    bob.language = "zh-hant"
    bob.save()
    client.force_login(bob)
    client.cookies["django_language"] = "en"
    response = client.get("/home/", HTTP_ACCEPT_LANGUAGE="zh-hans,en")
    assert response["Content-Language"] == "zh-hant"
    assert '<html lang="zh-hant"' in response.text


def test_visitor_gets_the_browser_language(client, db):
    response = client.get("/accounts/sign-in/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert response["Content-Language"] == "zh-hans"


def test_switching_language_saves_it_on_the_account(client, bob):
    client.force_login(bob)
    response = client.post("/language/", {"language": "zh-hans", "next": "/accounts/preferences/"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/preferences/"
    assert response.cookies["django_language"].value == "zh-hans"
    bob.refresh_from_db()
    assert bob.language == "zh-hans"


def test_visitor_switching_language_gets_a_cookie_only(client, db):
    response = client.post("/language/", {"language": "zh-hant", "next": "/accounts/sign-in/"})
    assert response.cookies["django_language"].value == "zh-hant"
    assert client.get("/accounts/sign-in/")["Content-Language"] == "zh-hant"


def test_unknown_language_changes_nothing(client, bob):
    client.force_login(bob)
    response = client.post("/language/", {"language": "fr", "next": "/"})
    assert "django_language" not in response.cookies
    bob.refresh_from_db()
    assert bob.language == ""


def test_language_switch_never_redirects_to_another_site(client, db):
    response = client.post("/language/", {"language": "en", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_language_switch_needs_post(client, db):
    assert client.get("/language/").status_code == 405


def test_preferences_save_language_time_zone_and_theme(client, bob):
    client.force_login(bob)
    response = client.post(
        "/accounts/preferences/", {"language": "zh-hans", "time_zone": "Asia/Shanghai", "theme": "dark"}, follow=True
    )
    assert response.status_code == 200
    bob.refresh_from_db()
    assert (bob.language, bob.time_zone, bob.theme) == ("zh-hans", "Asia/Shanghai", "dark")


def test_every_page_is_drawn_in_the_members_theme_from_the_first_paint(client, bob, alice):
    bob.theme = "dark"
    bob.save()
    client.force_login(bob)
    assert '<html lang="en" data-theme="dark">' in client.get("/home/").text
    client.force_login(alice)  # never chose: the device decides
    assert '<html lang="en" data-theme="system">' in client.get("/home/").text


def test_an_unknown_theme_is_refused(client, bob):
    client.force_login(bob)
    response = client.post("/accounts/preferences/", {"language": "", "time_zone": "", "theme": "neon"})
    assert 'class="field-error"' in response.text
    bob.refresh_from_db()
    assert bob.theme == "system"


def test_unknown_time_zone_is_refused_in_the_users_language(client, bob):
    bob.language = "zh-hans"
    bob.save()
    client.force_login(bob)
    response = client.post("/accounts/preferences/", {"language": "zh-hans", "time_zone": "Mars/Olympus", "theme": "system"})
    assert response.status_code == 200
    assert 'class="field-error"' in response.text
    bob.refresh_from_db()
    assert bob.time_zone == ""


def test_users_time_zone_is_active_during_their_requests(bob):
    bob.time_zone = "Asia/Shanghai"
    seen = []
    request = RequestFactory().get("/")
    request.user = bob
    UserPreferencesMiddleware(lambda r: seen.append(timezone.get_current_timezone()))(request)
    assert seen == [zoneinfo.ZoneInfo("Asia/Shanghai")]
