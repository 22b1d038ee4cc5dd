"""No vendor SDK and no LiteLLM at run time: adapters speak HTTP through aiohttp themselves."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"openai", "anthropic", "google-genai", "google-generativeai", "litellm", "cohere"}


def _names(specs: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", s, maxsplit=1)[0].lower() for s in specs}


def test_runtime_dependencies_have_no_vendor_sdk() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    assert runtime.isdisjoint(FORBIDDEN)
    assert {"httpx", "aiohttp", "celery", "sqlmodel", "flower", "genai-prices"} <= runtime
    # The SDKs are test dependencies only: they prove the wire formats.
    test_deps = _names(project["optional-dependencies"]["test"])
    assert {"openai", "anthropic", "google-genai"} <= test_deps


def test_importing_the_whole_runtime_loads_no_vendor_sdk() -> None:
    code = (
        "import sys, batchgate.api.app, batchgate.cli, batchgate.execution.runner, "
        "batchgate.simulator, batchgate.providers.registry;"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('openai', 'anthropic', 'google', 'litellm'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
