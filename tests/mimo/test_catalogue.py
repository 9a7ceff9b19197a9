from datetime import date

from chat.mimo import CHAT_MODELS, DEFAULT_MODEL, get_model, list_models, models_from_ids

from .conftest import NEW_MODEL


def test_catalogue_has_every_documented_chat_model_with_its_limits():
    assert {"mimo-v2.5-pro", "mimo-v2.5", "mimo-v2-pro", "mimo-v2-omni", "mimo-v2-flash"} <= CHAT_MODELS.keys()
    pro, omni, flash = CHAT_MODELS["mimo-v2.5-pro"], CHAT_MODELS["mimo-v2.5"], CHAT_MODELS["mimo-v2-flash"]
    assert (pro.context_window, pro.max_output_tokens, pro.default_output_tokens) == (1048576, 131072, 131072)
    assert (flash.context_window, flash.max_output_tokens) == (262144, 65536)
    assert omni.accepts_images and not pro.accepts_images
    assert pro.thinking_default and not flash.thinking_default
    assert pro.web_search and omni.web_search and not flash.web_search
    assert DEFAULT_MODEL == "mimo-v2.5-pro"


def test_v2_models_are_deprecated_from_june_30_2026():
    flash = CHAT_MODELS["mimo-v2-flash"]
    assert flash.deprecated_on == date(2026, 6, 30)
    assert flash.is_deprecated(date(2026, 7, 1)) and not flash.is_deprecated(date(2026, 6, 29))
    assert not CHAT_MODELS["mimo-v2.5-pro"].is_deprecated(date(2030, 1, 1))


def test_unknown_model_gets_conservative_defaults():
    model = get_model("mimo-v7")
    assert not model.known
    assert model.input_modalities == {"text"} and not model.web_search
    assert model.max_output_tokens <= 32768


def test_discovered_ids_keep_chat_models_and_add_new_ones():
    models = models_from_ids(["mimo-v2.5-tts", "mimo-v2.5-asr", "mimo-v3", "mimo-v2.5", "mimo-v2.5-pro"])
    assert [model.id for model in models] == ["mimo-v2.5-pro", "mimo-v2.5", "mimo-v3"]
    assert models[0].known and not models[2].known


async def test_a_model_mimo_adds_later_shows_up_through_v1_models(openai_endpoint):
    models = models_from_ids(await list_models(openai_endpoint))
    assert NEW_MODEL in [model.id for model in models]
    assert "mimo-v2.5-tts" not in [model.id for model in models]
