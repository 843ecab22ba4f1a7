"""Serving lionflow's models over HTTP, to any client of the OpenAI API: `create_app()` returns an
ASGI app (FastAPI; ``pip install "lionflow[server]"``), and ``lionflow serve`` runs one.

::

    from lionflow.serve import create_app

    app = create_app([iModel(provider="openai", model="gpt-4o-mini", name="gpt")])
"""

from lionflow.serve.app import create_app

__all__ = ["create_app"]
