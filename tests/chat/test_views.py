import pytest

from chat.models import Conversation, Message
from tests.conftest import make_user


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Bob's plans")


def test_owner_opens_the_conversation_page(client, bob, conversation):
    client.force_login(bob)
    response = client.get(f"/chats/{conversation.pk}/")
    assert response.status_code == 200
    assert f'ws-connect="/ws/conversations/{conversation.pk}/"' in response.text


@pytest.mark.parametrize("who", ["alice", "charlie"])  # a teammate, another team's member
def test_others_get_404_for_a_conversation_that_is_not_theirs(client, conversation, who, request):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/chats/{conversation.pk}/").status_code == 404


def test_signed_out_visitor_is_sent_to_sign_in(client, conversation):
    response = client.get(f"/chats/{conversation.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/sign-in/")


def test_list_shows_only_ones_own_conversations(client, alice, conversation):
    client.force_login(alice)
    Conversation.objects.create(owner=alice, team=conversation.team, title="Alice's own")
    page = client.get("/chats/").text
    assert "Alice&#x27;s own" in page
    assert "Bob" not in page


def test_new_conversation_needs_post_and_starts_with_the_recommended_prompt(client, bob):
    client.force_login(bob)
    assert client.get("/chats/new/").status_code == 405
    response = client.post("/chats/new/")
    conversation = Conversation.objects.get(owner=bob)
    assert response["Location"] == f"/chats/{conversation.pk}/"
    assert conversation.system_prompt.startswith("You are MiMo")
    assert conversation.team.name == "Acme"


def test_recommended_prompt_is_in_the_users_language_and_time_zone(client, bob):
    bob.language, bob.time_zone = "zh-hans", "Asia/Shanghai"
    bob.save()
    client.force_login(bob)
    client.post("/chats/new/")
    prompt = Conversation.objects.get(owner=bob).system_prompt
    assert prompt.startswith("你是 MiMo")
    assert "星期" in prompt


def test_member_of_no_team_cannot_start_a_chat(client, db):
    loner = make_user("loner")
    client.force_login(loner)
    response = client.post("/chats/new/", follow=True)
    assert "not in a team" in response.text
    assert not Conversation.objects.exists()


def test_page_renders_saved_messages_with_their_status(client, bob, conversation):
    Message.objects.create(conversation=conversation, role="user", content="Hi <b>there</b>")
    Message.objects.create(conversation=conversation, role="assistant", content="**bold** <script>x</script>", status="stopped")
    client.force_login(bob)
    page = client.get(f"/chats/{conversation.pk}/").text
    assert 'data-status="stopped"' in page
    assert "<strong>bold</strong>" in page
    assert "<script>x</script>" not in page
    assert "Hi &lt;b&gt;there&lt;/b&gt;" in page
