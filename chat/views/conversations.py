from django.contrib import messages
from django.db.models import prefetch_related_objects
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.http import AuthenticatedHttpRequest
from accounts.models import ApiKey
from chat import generation, mimo
from chat.forms import SendForm
from chat.models import Conversation, Message, get_conversation_for

# How much of a long conversation the page opens with; older messages stay in the database.
PAGE_MESSAGES = 50


def recommended_system_prompt():
    """MiMo's recommended system prompt (mimo-api.md §3), in the active language and time zone."""
    now = timezone.localtime()
    return _(
        "You are MiMo, an AI assistant developed by Xiaomi. Today is %(date)s, %(week)s. "
        "Your knowledge cutoff is December 2024."
    ) % {"date": date_format(now, "Y-m-d"), "week": date_format(now, "l")}


def conversation_list(request: AuthenticatedHttpRequest):
    conversations = Conversation.objects.visible_to(request.user)[:100]
    return render(request, "chat/list.html", {"conversations": conversations})


@require_POST
def new_conversation(request: AuthenticatedHttpRequest):
    membership = request.user.memberships.select_related("team").order_by("joined_at").first()
    if membership is None:
        messages.error(request, _("You are not in a team yet. Ask a team admin to add you."))
        return redirect("home")
    conversation = Conversation.objects.create(
        owner=request.user, team=membership.team, system_prompt=recommended_system_prompt()
    )
    return redirect("conversation", conversation_id=conversation.pk)


def conversation_page(request: AuthenticatedHttpRequest, conversation_id):
    conversation = get_conversation_for(request.user, conversation_id)
    Message.objects.filter(conversation=conversation).mark_dead(running=generation.running_ids())
    recent = list(conversation.messages.order_by("-created_at", "-id")[:PAGE_MESSAGES])[::-1]
    prefetch_related_objects(recent, "tool_calls", "citations")
    items = [generation.message_context(message) for message in recent]
    form = SendForm(
        initial={
            "model": conversation.model,
            "thinking": conversation.thinking,
            "web_search": conversation.web_search,
            "system_prompt": conversation.system_prompt,
        }
    )
    api_key = conversation.key_for_next_turn()
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": conversation,
            "items": items,
            "form": form,
            "model_options": [mimo.get_model(model_id) for model_id, _label in form.fields["model"].choices],
            "composer_streaming": any(item["message"].status == "streaming" for item in items),
            "has_key": api_key is not None,
            # MiMo offers web search in the OpenAI format only (mimo-api.md §8).
            "web_search_offered": api_key is not None and api_key.api_format == ApiKey.Format.OPENAI,
        },
    )
