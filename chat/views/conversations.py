from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _, pgettext
from django.views.decorators.http import require_POST
from django_htmx.http import reswap, retarget

from accounts.http import AuthenticatedHttpRequest
from chat import attachments, generation, mimo, versions
from chat.forms import SendForm
from chat.models import Conversation, Message, get_conversation_for
from chat.tokens import context_budget
from chat.views.attachments import with_tokens


def recommended_system_prompt():
    """MiMo's recommended system prompt (mimo-api.md §3), in the active language and time zone."""
    now = timezone.localtime()
    return _(
        "You are MiMo, an AI assistant developed by Xiaomi. Today is %(date)s, %(week)s. "
        "Your knowledge cutoff is December 2024."
    ) % {"date": date_format(now, "Y-m-d"), "week": date_format(now, "l")}


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
    window = opening_window(request, conversation)
    form = SendForm(
        conversation=conversation,
        initial={
            "model": conversation.model,
            "thinking": conversation.thinking,
            "web_search": conversation.web_search,
            "system_prompt": conversation.system_prompt,
            "temperature": conversation.temperature,
            "top_p": conversation.top_p,
            "max_output_tokens": conversation.max_output_tokens,
        },
    )
    api_key = conversation.key_for_next_turn()
    return render(
        request,
        "chat/conversation.html",
        {
            **generation.window_context(conversation, window),
            "form": form,
            "model_options": [model_option(mimo.get_model(model_id)) for model_id, _label in form.fields["model"].choices],
            "key_options": key_options(form, conversation),
            # Web search follows the key chosen in the composer (composer.js); this is the key when none is offered.
            "key_format": api_key.api_format if api_key else "",
            # From the rows, not the window: the answer streaming may lie outside a window opened on ?message=.
            "composer_streaming": conversation.messages.filter(status=Message.Status.STREAMING).exists(),
            "has_key": api_key is not None,
            # Files uploaded and not sent yet: their chips are back in the composer after a reload.
            "pending_attachments": [
                with_tokens(attachment)
                for attachment in conversation.attachments.filter(owner=request.user, message__isnull=True)
            ],
            "attachment_sentences": attachment_sentences(),
            "attachment_accept": ",".join(attachments.ACCEPTED_SUFFIXES),
        },
    )


def attachment_sentences():
    """The sentences the composer shows when the chosen model or key cannot take an attachment, with
    their %(…)s left for composer.js to fill in: the same ones the server refuses a send with."""
    return {
        "image": _(attachments.CANNOT_READ["image"]),
        "audio": _(attachments.CANNOT_READ["audio"]),
        "video": _(attachments.CANNOT_READ["video"]),
        "format": _(mimo.ErrorKind.UNSUPPORTED_IN_FORMAT.message),
        "document": _(attachments.DOCUMENT_TOO_LONG),
        "documents": _(attachments.DOCUMENTS_TOO_LONG),
    }


def model_option(model):
    """A model as the composer's model menu shows it: its figures from chat/mimo's catalogue, in words."""
    inputs = {"text": _("text"), "image": _("images"), "audio": _("audio"), "video": _("video")}
    return {
        "id": model.id,
        "context_label": token_count(model.context_window),
        "output_label": token_count(model.max_output_tokens),
        "inputs_label": pgettext("between input kinds", ", ").join(str(inputs[kind]) for kind in inputs if kind in model.input_modalities),
        "thinking_default": model.thinking_default,
        "web_search": model.web_search,
        "temperature": model.temperature,
        "top_p": model.top_p,
        "max_output_tokens": model.max_output_tokens,
        "default_output_tokens": model.default_output_tokens,
        # What the composer checks attachments against before sending (chat/attachments.py's why_not_sendable).
        "inputs": " ".join(sorted(model.input_modalities)),
        "document_budget": context_budget(model),
    }


def token_count(tokens):
    """1,048,576 as "1M", 262,144 as "256K": how MiMo's docs write context windows."""
    if tokens >= 1024 * 1024:
        return f"{tokens // (1024 * 1024)}M"
    return f"{tokens // 1024}K"


def key_options(form, conversation):
    """The key menu's options, each with its API format (web search needs OpenAI's); [] when there is no choice."""
    field = form.fields.get("api_key")
    if field is None:
        return []
    default = form.default_key
    options = [{"value": "", "label": field.empty_label, "api_format": default.api_format if default else "", "selected": not conversation.api_key_id}]
    for key in field.queryset:
        options.append(
            {
                "value": key.pk,
                "label": field.label_from_instance(key),
                "api_format": key.api_format,
                "selected": key.pk == conversation.api_key_id,
            }
        )
    return options


def is_id(value):
    """Whether a query parameter is a row id: ASCII digits only (str.isdigit takes "²", which int() refuses)."""
    return value.isascii() and value.isdigit()


def opening_window(request, conversation):
    """The latest messages; with `?message=<id>` (search results link there), the ones around that message.

    A message on a branch that is not the visible one has its branch shown
    first, unless an answer is streaming: then the page says so and opens as usual.
    """
    message_id = request.GET.get("message")
    if message_id is None:
        return versions.latest_window(conversation)
    message = get_object_or_404(conversation.messages, pk=message_id) if is_id(message_id) else None
    if message is None:
        raise Http404
    if not message.visible and not versions.switch_to(message):
        messages.warning(request, _("That message is in another version of this conversation. Open it again once MiMo has finished answering."))
        return versions.latest_window(conversation)
    return versions.window_around(message)


def message_page(request: AuthenticatedHttpRequest, conversation_id):
    """Older (`?before=<id>`) or newer (`?after=<id>`) messages of the visible branch, for the page to add as one scrolls."""
    conversation = get_conversation_for(request.user, conversation_id)
    before, after = request.GET.get("before", ""), request.GET.get("after", "")
    cursor_id = before or after
    if not is_id(cursor_id):
        return HttpResponseBadRequest(_("This link to older messages is incomplete."))
    cursor = get_object_or_404(conversation.messages, pk=cursor_id)
    window = versions.page_before(cursor) if before else versions.page_after(cursor)
    shown = request.GET.get("shown", "")  # how many messages the page holds already (chat/history.js)
    context = generation.window_context(conversation, window) | {
        "window_full": int(shown) + len(window.messages) >= versions.MAX_WINDOW if shown.isdigit() else False
    }
    return render(request, f"chat/message.html#{'older' if before else 'newer'}-messages", context)


@require_POST
def show_version(request: AuthenticatedHttpRequest, conversation_id, message_id):
    """`‹ 2/3 ›`: show the branch through this version; every tab on the conversation follows."""
    conversation = get_conversation_for(request.user, conversation_id)
    message = get_object_or_404(conversation.messages, pk=message_id)
    if not versions.switch_to(message):
        notice = _("MiMo is still answering. Wait for the answer or stop it first.")
        return reswap(retarget(render(request, "chat/conversation.html#notice", {"notice": notice}), "#notice"), "outerHTML")
    try:
        async_to_sync(get_channel_layer().group_send)(
            generation.group_name(conversation.pk), {"type": "conversation.changed", "message_id": message.pk}
        )
    except Exception as error:  # Redis unreachable: the other tabs show the switch when they catch up (chat/consumers.py's resync)
        generation.report_layer(False, error)
    if not request.htmx:
        return redirect(f"{reverse('conversation', args=[conversation.pk])}?message={message.pk}#message-{message.pk}")
    window = versions.window_around(message)
    return render(request, "chat/message.html#messages", generation.window_context(conversation, window))
