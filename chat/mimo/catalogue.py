"""The MiMo chat models mimoweb knows, and how to read the ones MiMo adds later.

Figures are the official ones from mimo-api.md §2 and §3. Models that only a
third party describes (v2.6, ultraspeed) carry the values it gave, marked below.
A model that `GET /v1/models` lists but this table does not gets conservative
defaults (`unknown_model`), so a new MiMo model shows up without a release.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

TEXT = frozenset({"text"})
OMNI = frozenset({"text", "image", "audio", "video"})
TEXT_AND_IMAGE = frozenset({"text", "image"})

# What MiMo takes inline (mimo-api.md §5.3): a base64 data URL of at most 50 MB (read as decimal
# megabytes, the stricter reading), and images of at most this many pixels (it scales larger ones down).
INLINE_MEDIA_BYTES = 50 * 1000 * 1000
MAX_IMAGE_PIXELS = 8_388_608

# All V2 models stop working at 2026-06-30 00:00 GMT+8 (mimo-api.md §2).
V2_END = date(2026, 6, 30)


@dataclass(frozen=True)
class Model:
    id: str
    context_window: int
    max_output_tokens: int
    # What MiMo uses when a request names no limit; we always send one.
    default_output_tokens: int
    input_modalities: frozenset[str]
    thinking_default: bool
    web_search: bool
    temperature: float
    top_p: float
    deprecated_on: date | None = None
    # False for a model only /v1/models told us about.
    known: bool = True

    @property
    def accepts_images(self) -> bool:
        return "image" in self.input_modalities

    def is_deprecated(self, today: date) -> bool:
        return self.deprecated_on is not None and today >= self.deprecated_on


K = 1024
M = 1024 * 1024

CHAT_MODELS: dict[str, Model] = {
    model.id: model
    for model in [
        # id, context window, max output, default output, inputs, thinking by
        # default, web search, temperature, top_p, deprecated on
        Model("mimo-v2.5-pro", M, 128 * K, 131072, TEXT, True, True, 1.0, 0.95),
        Model("mimo-v2.5", M, 128 * K, 32768, OMNI, True, True, 1.0, 0.95),
        # Ultraspeed is only on the price page: assumed to be v2.5-pro, faster.
        Model("mimo-v2.5-pro-ultraspeed", M, 128 * K, 131072, TEXT, True, False, 1.0, 0.95),
        # v2.6 figures come from third-party listings (mimo-api.md §2).
        Model("mimo-v2.6-pro", M, 128 * K, 131072, TEXT_AND_IMAGE, True, False, 1.0, 0.95),
        Model("mimo-v2.6-flash", M, 128 * K, 32768, TEXT_AND_IMAGE, True, False, 1.0, 0.95),
        Model("mimo-v2-pro", M, 128 * K, 131072, TEXT, True, False, 1.0, 0.95, V2_END),
        Model("mimo-v2-omni", 256 * K, 128 * K, 32768, OMNI, True, False, 1.0, 0.95, V2_END),
        # 0.8 is the recommendation for general conversation (§3); the API's
        # own default, 0.3, is the one for coding and tool use.
        Model("mimo-v2-flash", 256 * K, 64 * K, 65536, TEXT, False, False, 0.8, 0.95, V2_END),
    ]
}

DEFAULT_MODEL = "mimo-v2.5-pro"
# The most any known model writes: the bound for a chosen maximum before the model is known.
MOST_OUTPUT_TOKENS = max(model.max_output_tokens for model in CHAT_MODELS.values())

# Ids /v1/models may list that are not chat models (speech in, speech out).
_NOT_CHAT_MARKERS = ("-tts", "-asr")


def unknown_model(model_id: str) -> Model:
    """Defaults for a model we have no figures for: small limits, text only.

    Thinking on by default like every current MiMo model; no web search,
    since sending the tool to a model without it is the riskier mistake.
    """
    return Model(
        id=model_id,
        context_window=128 * K,
        max_output_tokens=32 * K,
        default_output_tokens=8192,
        input_modalities=TEXT,
        thinking_default=True,
        web_search=False,
        temperature=1.0,
        top_p=0.95,
        known=False,
    )


def get_model(model_id: str) -> Model:
    return CHAT_MODELS.get(model_id) or unknown_model(model_id)


def is_chat_model_id(model_id: str) -> bool:
    return not any(marker in model_id for marker in _NOT_CHAT_MARKERS)


def models_from_ids(model_ids: Iterable[str]) -> list[Model]:
    """The chat models among the ids /v1/models returned, known ones first."""
    ids = set(model_ids)
    known = [model for model_id, model in CHAT_MODELS.items() if model_id in ids]
    new = [unknown_model(model_id) for model_id in sorted(ids - CHAT_MODELS.keys()) if is_chat_model_id(model_id)]
    return known + new
