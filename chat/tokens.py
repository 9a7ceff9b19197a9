"""How many tokens a text takes, about, and how many a request to a model may hold.

Estimates, since no tokenizer for MiMo is public. Fitting the history into the context
(generation.fit_to_context) and checking documents before they are sent
(attachments.why_not_sendable) count with these same figures.
"""


def estimated_tokens(text):
    """An upper bound, inexact on purpose.

    A CJK character is about one token, other text about four characters a
    token; counting three keeps us on the safe side.
    """
    wide = sum(1 for character in text if ord(character) >= 0x2E80)
    return wide + (len(text) - wide) // 3 + 4


def context_budget(model):
    """What a request to the model may hold: its context window, less the room its answer needs by default."""
    return model.context_window - model.default_output_tokens
