from playwright.sync_api import expect

from accounts.models import ApiKey
from tests.browser.conftest import open_menu, sign_in_as
from tests.conftest import PASSWORD, SECRET


def fill_sign_in(page, username, password):
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_member_signs_in_and_out(page, bob):
    page.goto("/")
    expect(page).to_have_url("/accounts/sign-in/?next=/")
    fill_sign_in(page, "bob", PASSWORD)
    # A member signs in to chat: they land in a new one, the cursor in the message box.
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    open_menu(page).get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_repeated_wrong_passwords_are_throttled_with_a_clear_message(page, bob):
    page.goto("/accounts/sign-in/")
    for _ in range(5):
        fill_sign_in(page, "bob", "not my password")
        expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    fill_sign_in(page, "bob", PASSWORD)
    expect(page.get_by_role("alert")).to_have_text("Too many failed sign-in attempts. Try again in 15 minutes.")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_language_switch_to_simplified_and_traditional_chinese(page, live_url, bob):
    sign_in_as(page, live_url, bob)
    page.goto("/home/")
    open_menu(page).get_by_role("button", name="简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(open_menu(page).get_by_role("button", name="退出登录")).to_be_visible()
    page.get_by_role("button", name="繁體中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hant")
    expect(open_menu(page).get_by_role("button", name="登出")).to_be_visible()
    bob.refresh_from_db()
    assert bob.language == "zh-hant"


def test_visitor_switches_the_sign_in_page_to_chinese(page, db):
    page.goto("/accounts/sign-in/")
    page.get_by_role("button", name="简体中文").click()
    expect(page.get_by_role("heading", name="登录")).to_be_visible()


def test_superuser_adds_a_team_key_in_the_admin_and_sees_only_its_last_four(page, live_url, root, acme):
    sign_in_as(page, live_url, root)
    page.goto("/admin/accounts/apikey/add/")
    page.get_by_label("Team:", exact=True).select_option(label="Acme")
    page.get_by_label("Label").fill("Production")
    page.get_by_label("API key").fill(SECRET)
    expect(page.get_by_label("API key")).to_have_attribute("type", "password")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("was added successfully")).to_be_visible()
    expect(page.get_by_role("cell", name="…" + SECRET[-4:], exact=True)).to_be_visible()
    assert SECRET not in page.content()
    page.get_by_role("link", name="Production", exact=True).click()
    expect(page.get_by_text("…" + SECRET[-4:]).first).to_be_visible()
    expect(page.get_by_label("Replace the API key")).to_have_value("")
    assert SECRET not in page.content()
    assert ApiKey.objects.get().decrypt_secret() == SECRET
