"""``lionflow serve --config FILE``: many models and the server's settings in TOML; keys stay in the
environment; every mistake in the file is named with where it is."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from lionflow import ConfigurationError
from lionflow.serve.config import load_config
from tests.serve.test_command import running

GOOD = """
[server]
api_key_env = "SERVE_TEST_KEYS"
resume_grace = 2.5

[[models]]
name = "first"
provider = "scripted"
model = "one"
responses = ["from the first"]

[[models]]
name = "second"
provider = "scripted"
model = "two"
chunk_size = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lionflow.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.anyio
async def test_a_config_file_serves_its_models_behind_its_keys(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with running("--config", str(path), env={"SERVE_TEST_KEYS": "sk-config"}) as base_url:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-config") as client:
            assert [model.id async for model in client.models.list()] == ["first", "second"]
            completion = await client.chat.completions.create(
                model="first", messages=[{"role": "user", "content": "hi"}]
            )
            assert completion.choices[0].message.content == "from the first"
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-other", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()


def test_a_models_key_comes_from_the_variable_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = 'name = "gpt"\nprovider = "openai"\nmodel = "gpt-4o-mini"\napi_key_env = "CONFIG_TEST_KEY"\n'
    path = write(tmp_path, "[[models]]\n" + entry)
    config = load_config(path)
    with pytest.raises(ConfigurationError, match="CONFIG_TEST_KEY holds no key"):
        config.build_models()
    monkeypatch.setenv("CONFIG_TEST_KEY", "sk-from-env")
    (model,) = config.build_models()
    assert model.name == "gpt"
    assert model.adapter.api_key == "sk-from-env"  # type: ignore[attr-defined]  # an SdkProvider


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[server\nport = 1", "not valid TOML"),
        ("[servers]\nport = 1", "unknown tables"),
        ("[server]\nprot = 1", "no setting 'prot'"),
        ('[server]\nport = "8000"', "wrong type"),
        ("[server]\nport = true", "wrong type"),
        ('[[models]]\nname = "x"\nprovider = "scripted"', "needs model"),
        ('[[models]]\nname = "x"\nprovider = "openai"\nmodel = "m"\napi_key = "sk-secret"', "keep keys out"),
        ("models = 3", "array of tables"),
    ],
)
def test_mistakes_in_the_file_are_named(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint) as caught:
        load_config(write(tmp_path, text))
    assert "sk-secret" not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the configuration"):
        load_config(tmp_path / "nope.toml")
