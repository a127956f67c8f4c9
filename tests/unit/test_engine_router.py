"""Several engines in one hub: the router hands each instance the engine its record names; cloud settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.support.server import API_KEY
from wahub import config
from wahub.engines.base import Engine, EngineFactory, EventSink
from wahub.engines.cloud.crypto import generate_key
from wahub.runtime.compose import EngineRouter, cloud_options


class Factory(EngineFactory):
    def __init__(self, name: str) -> None:
        self.name = name
        self.created: list[str] = []
        self.removed: list[str] = []
        self.closed = 0

    def create(self, instance_id: str, sink: EventSink) -> Engine:
        self.created.append(instance_id)
        return object()  # type: ignore[return-value]

    async def remove_session(self, instance_id: str) -> None:
        self.removed.append(instance_id)

    async def close(self) -> None:
        self.closed += 1


async def _sink(_event: object) -> None:
    return None


async def test_each_instance_gets_its_own_engine_and_close_closes_every_built_factory() -> None:
    built = {"sandbox": Factory("sandbox"), "cloud": Factory("cloud"), "whatsmeow": Factory("whatsmeow")}
    router = EngineRouter("sandbox", {k: (lambda f=f: f) for k, f in built.items()})
    engines = {"shop-a": "cloud", "shop-b": "sandbox"}
    router.engine_of = engines.get
    router.create("shop-a", _sink)
    router.create("shop-b", _sink)
    router.create("unknown", _sink)  # not in the registry (yet): the default engine
    await router.remove_session("shop-a")
    assert built["cloud"].created == ["shop-a"] and built["cloud"].removed == ["shop-a"]
    assert built["sandbox"].created == ["shop-b", "unknown"]
    assert router.offers("cloud") and not router.offers("telegram")
    await router.close()
    assert (built["cloud"].closed, built["sandbox"].closed) == (1, 1)
    assert built["whatsmeow"].closed == 0  # never built: nothing to close, neonize never loaded


def test_cloud_settings_reach_the_engine_options_and_a_bad_key_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    settings = config.Settings(api_key=API_KEY, cloud_credentials_key=f" {key} ",
                               cloud_graph_url="http://127.0.0.1:4010/", cloud_graph_timeout_ms=2500,
                               cloud_webhook_max_bytes=4096)
    assert settings.cloud_credentials_key == key
    options = cloud_options(settings)
    assert (options.base_url, options.timeout_s, options.connect_timeout_s) == ("http://127.0.0.1:4010", 2.5, 2.5)
    defaults = config.Settings(api_key=API_KEY)
    assert (defaults.cloud_credentials_key, defaults.cloud_graph_url, defaults.cloud_graph_timeout_ms,
            defaults.cloud_webhook_max_bytes) == (None, "https://graph.facebook.com", 15000, 524288)
    for bad in ("not-a-key", f"{key},short", "ftp://graph"):
        name = "WAHUB_CLOUD_GRAPH_URL" if bad.startswith("ftp") else "WAHUB_CLOUD_CREDENTIALS_KEY"
        with monkeypatch.context() as env:
            env.setenv(name, bad)
            with pytest.raises(ValidationError) as refused:
                config.Settings(api_key=API_KEY)
        assert name in config.describe_error(refused.value)
