from django import template

from chat import render

register = template.Library()


@register.filter
def render_plain(text):
    """Tool arguments and results: untrusted, shown escaped (JSON pretty-printed)."""
    return render.render_plain(text)
