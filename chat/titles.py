"""A short title for a new conversation, asked of MiMo once an answer in it is complete.

A small request of its own (thinking off, a few tokens, not streamed, no
retries) run as its own task after the answer, so it never delays or breaks
the answer. When MiMo gives none, the first words of the person's first
message are the title. A title is only ever written over a blank one: a
rename made meanwhile wins.
"""

import asyncio
import logging

from django.core.exceptions import ValidationError
from django.utils.text import Truncator

from accounts.crypto import UndecryptableSecret
from chat import mimo
from chat.models import Conversation, Message

logger = logging.getLogger(__name__)

TITLE_WORDS = 6
TITLE_CHARS = 60  # Chinese has no spaces between words: words alone would not bound it
MAX_OUTPUT_TOKENS = 30
QUESTION_CHARS = 1500  # enough of the first message to name the conversation, cheap to send

# Sent to MiMo, not shown to anyone: English works for every language it answers in.
PROMPT = (
    "Write a title of at most 6 words for a conversation that begins with the message below. "
    "Write it in the language of that message. Answer with the title only, without quotes.\n\n"
    "Message:\n{question}"
)

QUOTES = "\"'“”‘’「」『』《》"
# Titles asked at once by a process. Answers asked for together end together, and a title costs
# about what an answer's end does (a read, a request, a write, a frame): 200 answers ending in
# the same second brought 200 title requests with them, and the streams still running waited
# for both (bench/README.md). Beyond this many, a title waits its turn, seconds late under such a burst.
TITLES_AT_ONCE = 8

# The loop keeps only weak references to tasks: these keep running titles alive.
_tasks = set()
_slots = None  # (event loop, its semaphore of TITLES_AT_ONCE): a semaphore serves one loop


def title_soon(generation):
    """After a complete answer: name its conversation in the background, if it has no title yet."""
    if generation.conversation.title:
        return  # titled already (a rename since the socket opened is caught by `give_title`)
    task = asyncio.get_running_loop().create_task(title_and_announce(generation))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def title_and_announce(generation):
    """Title the conversation, then show the title on the pages watching it."""
    conversation = generation.conversation
    try:
        async with title_slots():
            title = await give_title(conversation.pk, generation.api_key)
    except Exception:
        logger.exception("Could not give conversation %s a title", conversation.pk)
        return
    if title:
        conversation.title = title
        generation.publish("chat/conversation.html#title-changed", {"conversation": conversation})


def title_slots():
    """The semaphore that keeps this process to TITLES_AT_ONCE titles at once."""
    global _slots
    loop = asyncio.get_running_loop()
    if _slots is None or _slots[0] is not loop:
        _slots = (loop, asyncio.Semaphore(TITLES_AT_ONCE))
    return _slots[1]


async def give_title(conversation_id, api_key):
    """MiMo's title, else the first words; saved only over a blank title. Returns the title saved, or None."""
    # The first question, and its conversation's model as long as that has no title: one read, of those two fields.
    question = await (
        Message.objects.filter(conversation_id=conversation_id, conversation__title="", role=Message.Role.USER, visible=True)
        .order_by("created_at", "id")
        .values("content", "conversation__model")
        .afirst()
    )
    if question is None or not question["content"].strip():
        return None
    text = question["content"]
    title = await ask_mimo(api_key, question["conversation__model"], text) or first_words(text)
    saved = await Conversation.objects.filter(pk=conversation_id, title="").aupdate(title=title)
    return title if saved else None


async def ask_mimo(api_key, model, question):
    """A title from MiMo for a conversation opened by `question`, or "" when it gives none."""
    try:
        secret = await api_key.asecret_for_request()
    except (ValidationError, PermissionError, UndecryptableSecret):
        return ""
    endpoint = mimo.Endpoint(api_key.base_url, secret, mimo.ApiFormat(api_key.api_format))
    request = mimo.ChatRequest(
        model=model,
        turns=[mimo.UserTurn(PROMPT.format(question=question[:QUESTION_CHARS]))],
        thinking=False,
        max_output_tokens=MAX_OUTPUT_TOKENS,
    )
    try:
        # Whole, not streamed: nobody watches a title arrive, and one body costs less than an event per token.
        text = await mimo.whole_answer_text(endpoint, request)
    except mimo.MimoError as error:
        logger.info("MiMo gave no title for a conversation: %s", error.kind.value)
        return ""
    return clean_title(text)


def clean_title(text):
    """MiMo's answer as a title: its first line, without markdown marks, quotes or a full stop."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = line.replace("*", "").replace("`", "").lstrip("# ")
    line = line.lstrip(QUOTES + " ").rstrip(QUOTES + ".。 ")
    return Truncator(line).chars(TITLE_CHARS)


def first_words(text):
    """The fallback title: the first words of the person's message."""
    return Truncator(Truncator(" ".join(text.split())).words(TITLE_WORDS)).chars(TITLE_CHARS)
