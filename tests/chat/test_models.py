import subprocess
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.http import Http404
from django.utils import timezone

from chat import mimo, processes
from chat.generation import fit_to_context
from chat.models import Conversation, Message, ToolCall, get_conversation_for


@pytest.fixture
def conversation(bob, acme):
    return Conversation.objects.create(owner=bob, team=acme)


def add(conversation, role, content="", **fields):
    return Message.objects.create(conversation=conversation, role=role, content=content, **fields)


def test_history_is_rebuilt_from_rows_with_reasoning_tool_calls_and_results(conversation):
    add(conversation, "user", "What is 2+2?")
    asked = add(conversation, "assistant", "", reasoning_content="Use the calculator.", thinking_signature="")
    ToolCall.objects.create(
        message=asked, index=0, call_id="call_1", name="calculator", arguments_raw='{"expression": "2+2"}',
        result='{"result": 4}', status=ToolCall.Status.DONE,
    )
    add(conversation, "assistant", "It is 4.", reasoning_content="")
    assert conversation.turns() == [
        mimo.UserTurn("What is 2+2?"),
        mimo.AssistantTurn(
            text="",
            reasoning="Use the calculator.",
            signature="",
            tool_calls=[mimo.ToolCall("call_1", "calculator", '{"expression": "2+2"}')],
        ),
        mimo.ToolResult("call_1", '{"result": 4}', False),
        mimo.AssistantTurn(text="It is 4.", reasoning="", signature=None, tool_calls=[]),
    ]


def test_the_history_costs_one_query_before_the_first_answer_and_two_after_whatever_the_tool_calls(
    conversation, django_assert_num_queries
):
    add(conversation, "user", "What is 2+2?")
    with django_assert_num_queries(1):
        conversation.turns()
    for number in range(3):
        asked = add(conversation, "assistant", "")
        ToolCall.objects.create(message=asked, index=0, call_id=f"call_{number}", name="calculator", status=ToolCall.Status.DONE)
    with django_assert_num_queries(2):
        assert len(conversation.turns()) == 7


def test_no_reasoning_received_stays_distinct_from_empty_reasoning(conversation):
    add(conversation, "user", "hi")
    add(conversation, "assistant", "hello")
    assert conversation.turns()[1].reasoning is None


def test_failed_and_interrupted_answers_are_left_out_of_the_history(conversation):
    add(conversation, "user", "hi")
    add(conversation, "assistant", "half an ans", status=Message.Status.ERROR)
    add(conversation, "assistant", "half again", status=Message.Status.INTERRUPTED)
    add(conversation, "assistant", "kept, the user stopped it", status=Message.Status.STOPPED)
    assert [turn.text for turn in conversation.turns()] == ["hi", "kept, the user stopped it"]


def test_tool_call_that_never_finished_is_not_replayed(conversation):
    add(conversation, "user", "hi")
    asked = add(conversation, "assistant", "", status=Message.Status.STOPPED)
    ToolCall.objects.create(message=asked, index=0, call_id="c", name="calculator", arguments_raw='{"expr')
    assert conversation.turns()[1].tool_calls == []


def test_oldest_exchanges_are_left_out_to_fit_and_a_tool_call_keeps_its_result():
    model = mimo.get_model("mimo-v2-flash")  # 256 K context, 64 K output
    big = "x" * 300_000  # about 100 K tokens
    turns = [
        mimo.UserTurn(big),
        mimo.AssistantTurn(text="", tool_calls=[mimo.ToolCall("c1", "calculator", "{}")]),
        mimo.ToolResult("c1", "4"),
        mimo.AssistantTurn(text="done"),
        mimo.UserTurn(big),
        mimo.AssistantTurn(text="ok"),
        mimo.UserTurn("last question"),
    ]
    kept, left_out, _attachments = fit_to_context(turns, "", model)
    assert left_out == 4  # the whole first exchange, tool call and result together
    assert kept == turns[4:]


def test_latest_exchange_is_kept_even_when_it_alone_is_too_long():
    model = mimo.get_model("mimo-v2-flash")
    turns = [mimo.UserTurn("x" * 3_000_000)]
    assert fit_to_context(turns, "", model) == (turns, 0, 0)


def test_streams_with_a_stale_heartbeat_become_interrupted(conversation, bob, acme):
    stale = add(conversation, "assistant", "partial", status="streaming", heartbeat_at=timezone.now() - timedelta(minutes=2))
    other = Conversation.objects.create(owner=bob, team=acme)
    fresh = add(other, "assistant", "going", status="streaming", heartbeat_at=timezone.now())
    Message.objects.mark_dead()
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, stale.content) == ("interrupted", "partial")
    assert fresh.status == "streaming"


def test_streams_running_in_this_process_are_not_marked_dead(conversation):
    stale = add(conversation, "assistant", "", status="streaming", heartbeat_at=timezone.now() - timedelta(minutes=2))
    Message.objects.mark_dead(running=[str(conversation.pk)])
    stale.refresh_from_db()
    assert stale.status == "streaming"


def test_streams_of_a_process_that_is_gone_become_interrupted_without_waiting_for_their_beat(conversation, bob, acme):
    process = subprocess.Popen(["sleep", "60"])
    process.kill()
    process.wait()
    space = processes.own_pid_space()
    beat = timezone.now()
    orphan = add(conversation, "assistant", "half", status="streaming", heartbeat_at=beat, process=f"{space}:{process.pid}:0badc0de")
    ours = add(Conversation.objects.create(owner=bob, team=acme), "assistant", "going", status="streaming", heartbeat_at=beat, process=processes.current())
    # A process elsewhere cannot be asked: its beat decides.
    elsewhere = add(
        Conversation.objects.create(owner=bob, team=acme), "assistant", "far", status="streaming", heartbeat_at=beat,
        process=f"another-host/1234abcd/4026531836:{process.pid}:0badc0de",
    )
    assert Message.objects.mark_dead() == 1
    for message in (orphan, ours, elsewhere):
        message.refresh_from_db()
    assert (orphan.status, orphan.content, orphan.heartbeat_at) == ("interrupted", "half", None)
    assert (ours.status, elsewhere.status) == ("streaming", "streaming")


def test_only_the_owner_gets_the_conversation(conversation, bob, alice, charlie):
    assert get_conversation_for(bob, conversation.pk) == conversation
    for outsider in (alice, charlie):  # a teammate and another team's member
        with pytest.raises(Http404):
            get_conversation_for(outsider, conversation.pk)
    with pytest.raises(Http404):
        get_conversation_for(bob, "not-a-uuid")


def test_explanations_say_what_happened_in_plain_words(conversation):
    assert "stopped" in add(conversation, "assistant", status="stopped").explanation()
    assert "busy" in add(conversation, "assistant", status="error", error_kind="overloaded").explanation()
    assert "repeating" in add(conversation, "assistant", finish_reason="repetition_truncation").explanation()
    assert add(conversation, "assistant", finish_reason="stop").explanation() == ""


def test_a_conversation_streams_one_answer_at_a_time(conversation):
    add(conversation, "assistant", status="streaming")
    with pytest.raises(IntegrityError):
        add(conversation, "assistant", status="streaming")
