"""Sending attachments with a message: which ids a send may carry, what the chosen model and key can take,
what reaches MiMo on the first turn and on later ones, edit and regenerate, and where sent files show."""

import hashlib
import re

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.models import ApiKey, Membership
from chat import attachments, generation, mimo, search
from chat.attachments import read_upload
from chat.forms import ATTACHMENT_GONE, SendForm
from chat.models import Attachment, Conversation, Message, ReviewAccess, Share
from chat import transfer
from tests.chat.test_attachments import attachment_storage, encoded_media, image_bytes, pdf_with_text  # noqa: F401
from tests.chat.test_consumers import connect, frames_until_finished, latest_answer
from tests.conftest import make_user

# A real recording of a tone (audio is decoded by FFmpeg when it is attached).
WAV = encoded_media("wav", "pcm_s16le", seconds=0.2)


def stored(owner, conversation, name, content):
    return attachments.store(read_upload(SimpleUploadedFile(name, content)), owner=owner, conversation=conversation)


def a_png(owner, conversation, size=(40, 30)):
    return stored(owner, conversation, "chart.png", image_bytes(size))


def a_document(owner, conversation, name="notes.md", text="# Notes"):
    return stored(owner, conversation, name, text.encode())


def a_long_document(owner, conversation, name, words):
    """A document row whose text is long (no file: only its text counts before sending)."""
    text = "word " * words
    return Attachment.objects.create(
        owner=owner, conversation=conversation, kind="document", name=name, content_type=attachments.TEXT,
        size=len(text), sha256=hashlib.sha256(text.encode()).hexdigest(), text=text,
    )


def send_form(text, ids, model="mimo-v2.5", **fields):
    return {"action": "send", "text": text, "model": model, "thinking": "on", "attachments": [str(i) for i in ids], **fields, "HEADERS": {}}


def make_key(team, url, api_format="openai"):
    key = ApiKey(team=team, label=f"fake {api_format}", base_url=url, api_format=api_format)
    key.set_secret("sk-test-attachments-key")
    key.save()
    return key


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


# --- Which ids a send may carry (SendForm) ------------------------------------------------------


def form(conversation, ids, text="Look", model="mimo-v2.5"):
    return SendForm({"text": text, "model": model, "attachments": [str(i) for i in ids]}, conversation=conversation)


@pytest.mark.django_db
def test_a_send_takes_the_members_own_waiting_files_of_this_conversation(bob, conversation):
    image, document = a_png(bob, conversation), a_document(bob, conversation)
    sent = form(conversation, [image.pk, document.pk])
    assert sent.is_valid(), sent.errors
    assert sent.cleaned_data["attachments"] == [image, document]


@pytest.mark.django_db
def test_a_message_may_be_files_alone_but_not_nothing(bob, conversation):
    assert form(conversation, [a_png(bob, conversation).pk], text="").is_valid()
    assert form(conversation, [], text="  ").errors == {"text": ["This field is required."]}


@pytest.mark.django_db
@pytest.mark.parametrize("whose", ["another members", "another conversations", "already sent", "not an id"])
def test_ids_that_are_not_the_members_waiting_files_here_are_refused(bob, acme, conversation, whose):
    alice = make_user("alice-member", acme)
    if whose == "another members":
        theirs = Conversation.objects.create(owner=alice, team=acme)
        ids = [a_png(alice, theirs).pk]
    elif whose == "another conversations":
        ids = [a_png(bob, Conversation.objects.create(owner=bob, team=acme)).pk]
    elif whose == "already sent":
        attachment = a_png(bob, conversation)
        attachment.message = Message.objects.create(conversation=conversation, role="user", content="Earlier")
        attachment.save()
        ids = [attachment.pk]
    else:
        ids = ["../../etc/passwd"]
    refused = form(conversation, [a_document(bob, conversation).pk, *ids])
    assert not refused.is_valid()
    assert refused.errors["attachments"] == [str(ATTACHMENT_GONE)]


@pytest.mark.django_db
def test_a_model_without_image_input_is_refused_an_image_in_words(bob, conversation):
    refused = form(conversation, [a_png(bob, conversation).pk], model="mimo-v2.5-pro")
    assert refused.errors["attachments"] == [
        "mimo-v2.5-pro cannot read images. Choose a model that reads them (the model menu says what each one reads), or remove them."
    ]


@pytest.mark.django_db
def test_audio_through_an_anthropic_key_is_refused_in_words(bob, acme, conversation):
    make_key(acme, "https://api.xiaomimimo.com", api_format="anthropic")
    refused = form(conversation, [stored(bob, conversation, "voice.wav", WAV).pk])
    assert refused.errors["attachments"] == [str(mimo.ErrorKind.UNSUPPORTED_IN_FORMAT.message)]
    acme.default_key = make_key(acme, "https://api.xiaomimimo.com", api_format="openai")
    acme.save()
    assert form(conversation, [stored(bob, conversation, "voice2.wav", encoded_media("wav", "pcm_s16le", seconds=0.3)).pk]).is_valid()


@pytest.mark.django_db
def test_a_document_too_long_for_the_model_is_refused_with_the_numbers(bob, conversation):
    # mimo-v2.5 reads 1,048,576 tokens, 32,768 of them kept for its answer.
    long = a_long_document(bob, conversation, "report.txt", 620_000)
    tokens = attachments.document_tokens(long)
    assert tokens > 1_015_808
    refused = form(conversation, [long.pk], model="mimo-v2.5")
    assert refused.errors["attachments"] == [
        f"report.txt is about {tokens:,} tokens, more than mimo-v2.5 reads at once (1,015,808, leaving room for its answer)."
    ]


@pytest.mark.django_db
def test_documents_that_fit_one_by_one_but_not_together_are_refused_with_their_sum(bob, conversation):
    first, second = (a_long_document(bob, conversation, f"part{n}.txt", 310_000 + n) for n in (1, 2))
    total = attachments.document_tokens(first) + attachments.document_tokens(second)
    assert form(conversation, [first.pk], model="mimo-v2.5").is_valid()
    refused = form(conversation, [first.pk, second.pk], model="mimo-v2.5")
    assert refused.errors["attachments"] == [
        f"These documents are about {total:,} tokens together, more than mimo-v2.5 reads at once "
        "(1,015,808, leaving room for its answer). Remove some of them."
    ]


# --- History rebuilt from rows -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_history_sends_each_questions_files_again_in_one_more_query(bob, conversation, django_assert_num_queries):
    question = Message.objects.create(conversation=conversation, role="user", content="What is this?")
    image, document = a_png(bob, conversation), a_document(bob, conversation)
    Attachment.objects.filter(pk__in=[image.pk, document.pk]).update(message=question)
    Message.objects.create(conversation=conversation, role="assistant", content="A chart and notes.")
    Message.objects.create(conversation=conversation, role="user", content="And now?")
    with django_assert_num_queries(3):  # messages, their tool calls, the attachments
        turns = conversation.turns()
    assert turns[0].images[0].url.startswith("data:image/png;base64,iVBOR")
    assert list(turns[0].documents) == [mimo.DocumentPart("notes.md", "# Notes")]
    assert turns[2] == mimo.UserTurn("And now?")


def test_old_attachments_are_left_out_first_when_the_history_would_overflow():
    model = mimo.get_model("mimo-v2-flash")  # 196,608 tokens for the history
    big = mimo.DocumentPart("old.txt", "word " * 60_000)  # about 100,000 tokens
    turns = [
        mimo.UserTurn("First", documents=[big]),
        mimo.AssistantTurn(text="Read it."),
        mimo.UserTurn("Second", documents=[big]),
        mimo.AssistantTurn(text="Read that too."),
        mimo.UserTurn("Third", documents=[big]),
    ]
    kept, turns_left_out, attachments_left_out = generation.fit_to_context(turns, "", model)
    assert (turns_left_out, attachments_left_out) == (0, 2)  # the words of every turn stay
    assert kept[0] == mimo.UserTurn("First") and kept[2] == mimo.UserTurn("Second")
    assert kept[4] == turns[4]  # the latest question keeps its document

    small = [mimo.UserTurn("First", documents=[mimo.DocumentPart("a.txt", "short")]), mimo.AssistantTurn(text="ok"), turns[4]]
    assert generation.fit_to_context(small, "", model) == (small, 0, 0)  # nothing left out while it fits


def test_an_images_tokens_follow_its_pixels_within_mimos_bounds():
    def url(size):
        return "data:image/png;base64," + __import__("base64").b64encode(image_bytes(size)).decode()

    assert generation.image_tokens(url((1024, 1024))) == 1024  # a token per 32×32 pixels
    assert generation.image_tokens(url((10, 10))) == 8  # at least 8,192 pixels are counted
    assert generation.image_tokens("data:image/png;base64,bm9wZQ==") == 8192  # unreadable: the most


# --- Over the socket, to the fake MiMo server -------------------------------------------------------------


@pytest.fixture
def socket_chat(transactional_db, bob, acme, fake_url):
    make_key(acme, fake_url)
    return Conversation.objects.create(owner=bob, team=acme, title="Plans")


async def send_and_read(communicator, form):
    await communicator.send_json_to(form)
    return await frames_until_finished(communicator)


@pytest.mark.django_db(transaction=True)
async def test_files_go_with_the_message_and_again_with_later_turns(socket_chat, bob, fake_records):
    image = await database_sync_to_async(a_png)(bob, socket_chat, (64, 48))
    document = await database_sync_to_async(stored)(bob, socket_chat, "plan.pdf", pdf_with_text("Grow in Q3"))
    communicator, _connected, _code = await connect(bob, socket_chat.pk)
    frames = await send_and_read(communicator, send_form("What do these say?", [image.pk, document.pk]))
    answer = await latest_answer(socket_chat)
    assert answer.content.startswith("I see 1 image (64×48), 1 document (plan.pdf).")
    assert answer.image_tokens and not answer.audio_tokens  # as MiMo counts them in prompt_tokens_details
    question = await Message.objects.aget(conversation=socket_chat, role="user")
    assert {a.pk async for a in Attachment.objects.filter(message=question)} == {image.pk, document.pk}
    assert await found_by(bob, "grow in q3") == [question.pk]  # by its document's text, at once
    # The frame that shows the question carries its thumbnail and its document's chip.
    shown = next(frame for frame in frames if f"message-{question.pk}" in frame)
    assert f"/attachments/{image.pk}/thumbnail/" in shown and "plan.pdf" in shown

    await send_and_read(communicator, send_form("And the date?", []))
    body = fake_records.all()[-1]["body"]
    first_question = body["messages"][0]["content"]  # no system prompt in this conversation
    assert [part["type"] for part in first_question] == ["image_url", "text"]
    assert '<document name="plan.pdf">' in first_question[1]["text"]
    assert body["messages"][-1]["content"] == "And the date?"
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.django_db(transaction=True)
async def test_edit_and_regenerate_keep_the_questions_files(socket_chat, bob):
    image = await database_sync_to_async(a_png)(bob, socket_chat)
    communicator, _connected, _code = await connect(bob, socket_chat.pk)
    await send_and_read(communicator, send_form("What is this?", [image.pk]))
    question = await Message.objects.aget(conversation=socket_chat, role="user")

    await send_and_read(communicator, {"action": "regenerate", "message_id": (await latest_answer(socket_chat)).pk})
    assert (await latest_answer(socket_chat)).content.startswith("I see 1 image (40×30).")

    await send_and_read(communicator, {"action": "edit", "message_id": question.pk, "text": "What is it, briefly?"})
    edited = await Message.objects.filter(role="user", visible=True).alast()
    assert edited.pk != question.pk
    copies = [a async for a in Attachment.objects.filter(message=edited)]
    assert [(a.sha256, a.name) for a in copies] == [(image.sha256, "chart.png")]  # a row of its own, the same file
    assert await Attachment.objects.filter(message=question).aexists()  # the first version keeps its own
    assert (await latest_answer(socket_chat)).content.startswith("I see 1 image (40×30).")
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@pytest.mark.django_db(transaction=True)
async def test_an_edited_questions_copied_documents_are_found_by_search_at_once(socket_chat, bob):
    document = await database_sync_to_async(stored)(bob, socket_chat, "plan.pdf", pdf_with_text("Grow in Q3"))
    communicator, _connected, _code = await connect(bob, socket_chat.pk)
    await send_and_read(communicator, send_form("What does it say?", [document.pk]))
    question = await Message.objects.aget(conversation=socket_chat, role="user")
    await send_and_read(communicator, {"action": "edit", "message_id": question.pk, "text": "Briefly?"})
    edited = await Message.objects.filter(role="user", visible=True).alast()
    assert edited.pk in await found_by(bob, "grow in q3")  # by its copy of the document's text
    await communicator.disconnect()
    await mimo.close_shared_http_client()


@database_sync_to_async
def found_by(user, query):
    """The messages search finds for the member, as the search page lists them."""
    form = search.SearchForm(user, {"q": query})
    assert form.is_valid(), form.errors
    return [hit["message_id"] for hit in form.hits()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("whose", ["another members", "already sent"])
async def test_a_send_with_files_it_may_not_send_changes_nothing_and_reaches_no_one(socket_chat, bob, acme, fake_records, whose):
    def files():
        if whose == "another members":
            alice = make_user("alice-member", acme)
            return a_png(alice, Conversation.objects.create(owner=alice, team=acme))
        attachment = a_png(bob, socket_chat)
        attachment.message = Message.objects.create(conversation=socket_chat, role="user", content="Earlier", created_at=timezone.now())
        attachment.save()
        return attachment

    attachment = await database_sync_to_async(files)()
    before = await Message.objects.filter(conversation=socket_chat).acount()
    communicator, _connected, _code = await connect(bob, socket_chat.pk)
    await communicator.send_json_to(send_form("Look", [attachment.pk]))
    assert "can no longer be sent" in await communicator.receive_from(timeout=5)
    assert await Message.objects.filter(conversation=socket_chat).acount() == before
    assert (await Attachment.objects.aget(pk=attachment.pk)).message_id == attachment.message_id
    assert fake_records.all() == []
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_file_removed_between_the_check_and_the_turn_leaves_nothing_behind(socket_chat, bob):
    image = await database_sync_to_async(a_png)(bob, socket_chat)
    await image.adelete()  # another tab removed it after the form was checked
    with pytest.raises(generation.AttachmentsGone):
        await generation.create_turn(socket_chat, "Look", None, [image])
    assert not await Message.objects.filter(conversation=socket_chat).aexists()


@pytest.mark.django_db(transaction=True)
async def test_an_image_to_a_model_without_image_input_is_refused_before_anything_is_sent(socket_chat, bob, fake_records):
    image = await database_sync_to_async(a_png)(bob, socket_chat)
    communicator, _connected, _code = await connect(bob, socket_chat.pk)
    await communicator.send_json_to(send_form("Look", [image.pk], model="mimo-v2.5-pro"))
    assert "mimo-v2.5-pro cannot read images" in await communicator.receive_from(timeout=5)
    assert not await Message.objects.filter(conversation=socket_chat).aexists()
    assert fake_records.all() == []
    await communicator.disconnect()


# --- Where sent and waiting files show ------------------------------------------------------------------


@pytest.fixture
def sent(bob, conversation):
    question = Message.objects.create(conversation=conversation, role="user", content="See these")
    Message.objects.create(conversation=conversation, role="assistant", content="Seen.", parent=question)
    image, document = a_png(bob, conversation), stored(bob, conversation, "plan.pdf", pdf_with_text("Grow"))
    Attachment.objects.filter(pk__in=[image.pk, document.pk]).update(message=question)
    return image, document


def shows(html, image, document):
    return (
        f'href="/attachments/{image.pk}/"' in html
        and f'src="/attachments/{image.pk}/thumbnail/"' in html
        and f'href="/attachments/{document.pk}/"' in html
        and "plan.pdf" in html
    )


@pytest.mark.django_db
def test_the_page_shows_sent_files_in_their_message_and_waiting_ones_in_the_composer(client, bob, conversation, sent):
    waiting = a_document(bob, conversation, "draft.md", "# Draft")
    client.force_login(bob)
    html = client.get(f"/chats/{conversation.pk}/").text
    assert shows(html, *sent)
    composer = html[html.index('id="composer-attachments"') :]
    assert f'name="attachments" value="{waiting.pk}"' in composer and "draft.md" in composer
    assert f'name="attachments" value="{sent[0].pk}"' not in html  # sent: not offered again


@pytest.mark.django_db
def test_a_share_shows_the_files_of_the_messages_it_holds(client, bob, acme, conversation, sent):
    share = Share.objects.create(
        conversation=conversation, created_by=bob,
        snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk))),
    )
    client.force_login(make_user("carol", acme))
    html = client.get(f"/shares/{share.pk}/").text
    assert shows(html, *sent)
    assert client.get(f"/attachments/{sent[0].pk}/thumbnail/").status_code == 200


@pytest.mark.django_db
def test_a_reviewer_sees_the_files_only_after_giving_a_reason(client, bob, acme, conversation, sent):
    acme.review_enabled = True
    acme.save()
    rita = make_user("rita", acme, Membership.Role.REVIEWER)
    client.force_login(rita)
    assert client.get(f"/review/{conversation.pk}/").status_code == 302  # to the reason first
    assert client.get(f"/attachments/{sent[0].pk}/").status_code == 404
    ReviewAccess.record(conversation, rita, "Checking the Q3 answers for finance")
    assert shows(client.get(f"/review/{conversation.pk}/").text, *sent)


@pytest.fixture
def sent_media(bob, conversation):
    """A question with a voice message and a video, and MiMo's answer."""
    question = Message.objects.create(conversation=conversation, role="user", content="Listen and watch")
    Message.objects.create(conversation=conversation, role="assistant", content="Done.", parent=question)
    audio = stored(bob, conversation, "voice.wav", encoded_media("wav", "pcm_s16le", seconds=1.6))
    video = stored(bob, conversation, "clip.mp4", encoded_media("mp4", "aac", "libx264", seconds=3))
    Attachment.objects.filter(pk__in=[audio.pk, video.pk]).update(message=question)
    return audio, video


def plays(html, audio, video):
    """Whether the page holds a player for each, with its name and length, fetching only metadata until played."""
    html = re.sub(r"\s+", " ", html)
    return (
        f'<audio controls preload="metadata" src="/attachments/{audio.pk}/" aria-label="voice.wav"></audio>' in html
        and f'<video controls preload="metadata" src="/attachments/{video.pk}/" aria-label="clip.mp4"></video>' in html
        and '<span class="attachment-name">voice.wav</span> <span class="attachment-size">0:02</span>' in html
        and '<span class="attachment-name">clip.mp4</span> <span class="attachment-size">0:03</span>' in html
    )


@pytest.mark.django_db
def test_sent_audio_and_video_show_as_players_on_the_page_a_share_and_in_review(client, bob, acme, conversation, sent_media):
    client.force_login(bob)
    assert plays(client.get(f"/chats/{conversation.pk}/").text, *sent_media)
    share = Share.objects.create(
        conversation=conversation, created_by=bob,
        snapshot=transfer.export_data(transfer.exportable(Conversation.objects.filter(pk=conversation.pk))),
    )
    client.force_login(make_user("carol", acme))
    assert plays(client.get(f"/shares/{share.pk}/").text, *sent_media)
    assert client.get(f"/attachments/{sent_media[0].pk}/", headers={"Range": "bytes=0-9"}).status_code == 206
    acme.review_enabled = True
    acme.save()
    rita = make_user("rita", acme, Membership.Role.REVIEWER)
    client.force_login(rita)
    ReviewAccess.record(conversation, rita, "Checking the voice notes")
    assert plays(client.get(f"/review/{conversation.pk}/").text, *sent_media)


@pytest.mark.django_db
def test_the_socket_frame_of_a_question_holds_the_same_players(conversation, sent_media):
    from django.template.loader import render_to_string

    question = Message.objects.prefetch_related("attachments").get(role="user")
    assert plays(render_to_string("chat/message.html#message", generation.message_context(question)), *sent_media)


@pytest.mark.django_db
def test_an_answer_says_when_older_files_were_left_out(conversation):
    answer = Message.objects.create(conversation=conversation, role="assistant", content="Done", attachments_left_out=2)
    from django.template.loader import render_to_string

    html = render_to_string("chat/message.html#message", generation.message_context(answer))
    assert re.sub(r"\s+", " ", html).count("2 attachments of older messages were left out to fit the model’s context window") == 1
