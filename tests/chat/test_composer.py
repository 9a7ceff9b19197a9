"""The composer's server side: its form (sampling within MiMo's ranges, the key menu's labels), the socket's
accept frame and refusals, and the settings that reach MiMo's request."""

import pytest
from channels.db import database_sync_to_async
from django.utils import translation

from accounts.models import ApiKey, Membership, Team
from chat import limits, mimo
from chat.forms import SendForm
from chat.models import Conversation
from tests.chat.test_consumers import connect, frames_until_finished, send_form


def make_key(team, label, base_url, secret="sk-test-1234", api_format="openai", owner=None):
    key = ApiKey(team=team, label=label, base_url=base_url, api_format=api_format, owner=owner)
    key.set_secret(secret)
    key.save()
    return key


def form_for(conversation, **data):
    return SendForm({"text": "Hi", "model": "mimo-v2.5-pro", **data}, conversation=conversation)


# --- The form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("temperature", "1.6", "Temperature must be between 0 and 1.5 for mimo-v2.5-pro."),
        ("top_p", "0", "Top p must be between 0.01 and 1 for mimo-v2.5-pro."),
        ("max_output_tokens", "131073", "Maximum output tokens must be between 1 and 131072 for mimo-v2.5-pro."),
    ],
)
def test_sampling_outside_the_models_range_is_refused_with_a_clear_error(bob, acme, field, value, message):
    form = form_for(Conversation(owner=bob, team=acme), **{field: value})
    assert not form.is_valid()
    assert form.errors[field] == [message]


def test_empty_sampling_fields_mean_the_models_own_values(bob, acme):
    form = form_for(Conversation(owner=bob, team=acme), temperature="", top_p="", max_output_tokens="")
    assert form.is_valid()
    assert (form.cleaned_data["temperature"], form.cleaned_data["top_p"], form.cleaned_data["max_output_tokens"]) == (None, None, None)


def test_a_sampling_error_is_in_the_members_language(bob, acme):
    with translation.override("zh-hans"):
        form = form_for(Conversation(owner=bob, team=acme), temperature="2")
        assert not form.is_valid()
        assert "mimo-v2.5-pro" in form.errors["temperature"][0] and "Temperature" not in form.errors["temperature"][0]


def test_the_default_key_option_names_the_key_it_stands_for(bob, acme):
    Team.objects.filter(pk=acme.pk).update(members_may_choose_key=True)
    key = make_key(acme, "Acme production", "https://api.xiaomimimo.com", secret="sk-live-abcdWXYZ")
    make_key(acme, "Backup", "https://api.xiaomimimo.com", secret="sk-live-0000")
    Team.objects.filter(pk=acme.pk).update(default_key=key)
    field = SendForm(conversation=Conversation.objects.create(owner=bob, team=acme)).fields["api_key"]
    assert field.empty_label == "The team’s default key: Acme production · pay-as-you-go · …WXYZ"
    assert "abcd" not in field.empty_label  # the last four only


def test_keys_are_labelled_by_where_they_are_sent_not_all_as_pay_as_you_go(bob, acme):
    Team.objects.filter(pk=acme.pk).update(members_may_choose_key=True, members_may_add_keys=True)
    make_key(acme, "Proxy", "https://llm.example.com", secret="sk-proxy-1111")
    make_key(acme, "Plan", "https://token-plan-sgp.xiaomimimo.com", secret="tp-plan-2222")
    make_key(acme, "Mine", "https://api.xiaomimimo.com", secret="sk-mine-3333", owner=bob)
    field = SendForm(conversation=Conversation.objects.create(owner=bob, team=acme)).fields["api_key"]
    labels = [label for _value, label in field.choices][1:]
    assert sorted(labels) == [
        "Mine · pay-as-you-go · …3333 (your own)",
        "Plan · Token Plan · …2222",
        "Proxy · llm.example.com · …1111",
    ]


# --- Budgets: one warning, worded for the reader's role -------------------------------------


@pytest.mark.parametrize("role", [Membership.Role.MEMBER, Membership.Role.ADMIN])
def test_a_used_up_budget_shows_one_warning_worded_for_the_role(bob, alice, acme, role):
    Membership.objects.filter(user=bob).update(role=role)
    Team.objects.filter(pk=acme.pk).update(monthly_token_limit=1, monthly_cost_limit=0)
    meters = limits.member_meters(Conversation.objects.create(owner=bob, team=acme))
    assert len(meters) == 2 and [meter.shows_warning for meter in meters].count(True) == 1
    warning = next(meter for meter in meters if meter.shows_warning).warning
    if role == Membership.Role.ADMIN:
        assert "you can raise it on its Limits page" in warning and "Ask" not in warning
    else:
        assert "Ask alice, a team admin of Acme, to raise it." in warning


# --- Through the socket --------------------------------------------------------------------

# The socket tests commit: the server's threads read what the test wrote.
socket_test = pytest.mark.django_db(transaction=True)


@pytest.fixture
def socket_conversation(bob, acme, fake_url):
    make_key(acme, "fake", fake_url, secret="sk-test-composer-key")
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


@socket_test
async def test_an_accepted_send_tells_the_sending_tab_alone_after_its_message_appears(socket_conversation, bob):
    sender, _connected, _code = await connect(bob, socket_conversation.pk)
    other, _connected, _code = await connect(bob, socket_conversation.pk)
    await sender.send_json_to(send_form("Hello"))
    frames = await frames_until_finished(sender)
    accepted = next(i for i, html in enumerate(frames) if "data-accepted" in html)
    appended = next(i for i, html in enumerate(frames) if "message-user" in html)
    assert appended < accepted
    assert 'id="notice"' in frames[accepted]  # and an earlier refusal's notice goes
    assert not any("data-accepted" in html for html in await frames_until_finished(other))
    await sender.disconnect()
    await other.disconnect()
    await mimo.close_shared_http_client()


@socket_test
async def test_a_refused_send_is_not_accepted_and_its_notice_lasts_until_the_answer_ends(socket_conversation, bob):
    communicator, _connected, _code = await connect(bob, socket_conversation.pk)
    await communicator.send_json_to(send_form("First [[fake:long=2000]] [[fake:speed=50]]"))
    await communicator.send_json_to(send_form("Second"))
    while "still answering" not in (html := await communicator.receive_from(timeout=10)):
        pass
    assert "data-until-answer-ends" in html and "data-accepted" not in html
    await communicator.send_json_to({"action": "stop", "HEADERS": {}})
    await frames_until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@socket_test
async def test_sampling_settings_are_saved_and_sent_to_mimo(socket_conversation, bob, fake_records):
    communicator, _connected, _code = await connect(bob, socket_conversation.pk)
    await communicator.send_json_to(
        send_form("Hello", thinking="", temperature="0.3", top_p="0.9", max_output_tokens="1000")
    )
    await frames_until_finished(communicator)
    await communicator.disconnect()
    await mimo.close_shared_http_client()
    body = fake_records.all()[0]["body"]
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (0.3, 0.9, 1000)
    saved = await Conversation.objects.aget(pk=socket_conversation.pk)
    assert (saved.temperature, saved.top_p, saved.max_output_tokens) == (0.3, 0.9, 1000)
    answer = await saved.messages.filter(role="assistant").afirst()
    assert answer.parameters == {"thinking": False, "web_search": False, "temperature": 0.3, "top_p": 0.9, "max_output_tokens": 1000}


@socket_test
async def test_a_new_title_reaches_the_heading_and_the_sidebar_row(bob, acme, fake_url, fake_records):
    await database_sync_to_async(make_key)(acme, "fake", fake_url, "sk-test-title-key")
    conversation = await Conversation.objects.acreate(owner=bob, team=acme)
    communicator, _connected, _code = await connect(bob, conversation.pk)
    await communicator.send_json_to(send_form("Hello"))
    while 'id="chat-title"' not in (html := await communicator.receive_from(timeout=20)):
        pass
    assert f'hx-swap-oob="innerHTML:#conversation-{conversation.pk}-title"' in html
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@socket_test
async def test_stop_stays_between_tool_rounds_and_goes_when_the_budget_ends_the_answer(socket_conversation, bob, acme):
    # Room for the first round only: its usage uses the budget up, and the next round is refused.
    await Team.objects.filter(pk=acme.pk).aupdate(monthly_token_limit=1)
    communicator, _connected, _code = await connect(bob, socket_conversation.pk)
    await communicator.send_json_to(send_form("Compute [[fake:tool]]"))
    frames = []
    while 'message-assistant" data-status="error"' not in (html := await communicator.receive_from(timeout=20)):
        frames.append(html)
    ended_round = next(html for html in frames if 'message-assistant" data-status="complete"' in html)
    assert 'data-streaming="true"' in ended_round  # a tool round's end is not the answer's
    assert 'data-streaming="false"' in html
    await communicator.disconnect()
    await mimo.close_shared_http_client()
