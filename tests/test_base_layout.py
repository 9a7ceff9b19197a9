import re


def test_pages_send_a_strict_content_security_policy(client, bob):
    client.force_login(bob)
    policy = client.get("/home/")["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert re.search(r"script-src 'self' 'nonce-[\w+/=-]+'", policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert re.search(r"media-src 'self'(;|$)", policy)  # players play our own files, and nothing else


def test_scripts_are_files_with_the_nonce_never_inline(client, bob):
    client.force_login(bob)
    response = client.get("/home/")
    nonce = re.search(r"'nonce-([\w+/=-]+)'", response["Content-Security-Policy"]).group(1)
    scripts = re.findall(r"<script([^>]*)>", response.text)
    assert scripts, "htmx is loaded"
    for attributes in scripts:
        assert 'src="' in attributes
        assert f'nonce="{nonce}"' in attributes


def test_htmx_2_and_its_websocket_extension_come_from_django_htmx(client, bob):
    client.force_login(bob)
    page = client.get("/home/").text
    assert "/static/django_htmx/htmx-2.min.js" in page
    assert "/static/django_htmx/ext/hx-ws-2.min.js" in page


def test_htmx_may_not_eval_or_inject_styles(client, db):
    page = client.get("/accounts/sign-in/").text
    assert '"allowEval": false' in page
    assert '"includeIndicatorStyles": false' in page


def test_navigation_offers_sign_out_as_a_post_form(client, bob):
    client.force_login(bob)
    page = client.get("/home/").text
    assert re.search(r'<form method="post" action="/accounts/sign-out/"', page)


def test_health_check_needs_no_sign_in(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok"


def test_the_menu_leads_a_team_admin_home_and_to_their_team(client, alice, bob, acme):
    client.force_login(alice)
    menu = client.get("/home/").text
    assert 'href="/home/"' in menu and f'href="/teams/{acme.pk}/"' in menu
    client.force_login(bob)
    assert f'href="/teams/{acme.pk}/"' not in client.get("/home/").text


def test_every_page_starts_with_a_skip_link_to_the_main_content(client, bob):
    client.force_login(bob)
    page = client.get("/home/").text
    assert page.index('class="skip-link" href="#main"') < page.index("<header")
    assert '<main id="main"' in page
