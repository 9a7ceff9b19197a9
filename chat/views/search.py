"""Search across the member's own chats (chat/search.py does the searching)."""

from django.core.paginator import Paginator
from django.shortcuts import render

from accounts.http import AuthenticatedHttpRequest
from chat import search

RESULTS_PER_PAGE = 20


def search_page(request: AuthenticatedHttpRequest):
    """A plain GET form; htmx asks for the results alone as the member types, and for more pages."""
    form = search.SearchForm(request.user, request.GET or None)
    page, results = None, []
    if form.is_valid():
        search.index_missing(request.user)
        page = Paginator(form.hits(), RESULTS_PER_PAGE).get_page(request.GET.get("page"))
        results = search.results(page, form.cleaned_data["q"])
    template = "chat/search.html"
    if request.htmx and not request.htmx.boosted:
        template += "#search-page" if "page" in request.GET else "#search-results"
    return render(request, template, {"form": form, "page": page, "results": results})
