"""The one adapter interface every vendor module implements.

An adapter only translates: an OpenAI-shaped request body (what batch files contain) into the
vendor's HTTP request, and the vendor's response or error back into an OpenAI-shaped body, a
`Usage`, or one of the classified errors of `batchgate.errors`. Sending is shared (`_http.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from batchgate.errors import ProviderError

if TYPE_CHECKING:
    from batchgate.config import Deployment

ENDPOINT_CHAT = "/v1/chat/completions"
ENDPOINT_EMBEDDINGS = "/v1/embeddings"
ENDPOINT_RESPONSES = "/v1/responses"
ENDPOINT_COMPLETIONS = "/v1/completions"
ENDPOINT_MODERATIONS = "/v1/moderations"
ENDPOINTS = (
    ENDPOINT_CHAT,
    ENDPOINT_EMBEDDINGS,
    ENDPOINT_RESPONSES,
    ENDPOINT_COMPLETIONS,
    ENDPOINT_MODERATIONS,
)


@dataclass(frozen=True, slots=True)
class Target:
    """One resolved deployment to call. Lives only inside the worker process that uses it."""

    vendor: str
    model: str  # the provider's model id, e.g. "gpt-4o-mini" or an Azure deployment name
    api_base: str
    api_key: str | None = field(default=None, repr=False)
    api_version: str | None = None
    deadline: float = 60.0  # seconds for one attempt, connect to last byte

    @classmethod
    def of(cls, dep: Deployment, deadline: float) -> Target:
        """The deployment to call, its key read now, in the calling process: never stored,
        logged or sent anywhere."""
        return cls(
            vendor=dep.vendor,
            model=dep.model,
            api_base=dep.api_base or "",
            api_key=dep.api_key(),
            api_version=dep.api_version,
            deadline=deadline,
        )


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    json: Mapping[str, Any]


@dataclass(slots=True)
class Usage:
    """Token counts as the vendor reported them, normalised.

    `input_tokens` is the whole prompt, cached part included (Anthropic reports cache reads and
    writes outside `input_tokens`; the adapter adds them back). `output_tokens` includes
    reasoning/thinking tokens (Gemini reports those apart); `reasoning_tokens` says how many of
    them were reasoning, for the Responses `usage` block only (it is not priced apart).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def to_responses(self) -> dict[str, Any]:
        """The `usage` block of a Responses API `response` object."""
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {
                "cached_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens,
            },
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class Completion:
    """A successful call: the body in the shape of the endpoint the client asked for."""

    body: dict[str, Any]
    usage: Usage
    request_id: str | None = None
    provider_model: str | None = None
    status_code: int = 200
    # The vendor's body as it came, on one line, when `body` is that body unchanged: stored and
    # written into the output file as received instead of encoded again (None: encode `body`).
    raw: str | None = None


class Adapter(ABC):
    """Translate between the OpenAI request/response shapes and one vendor's wire format."""

    vendor: ClassVar[str]
    endpoints: ClassVar[frozenset[str]] = frozenset({ENDPOINT_CHAT})

    @abstractmethod
    def build_request(self, endpoint: str, body: Mapping[str, Any], target: Target) -> HttpRequest:
        """The vendor HTTP request for one OpenAI-shaped body. Raises UnsupportedParameter."""

    @abstractmethod
    def parse_response(
        self, endpoint: str, payload: Mapping[str, Any], headers: Mapping[str, str], target: Target
    ) -> Completion:
        """A 2xx vendor payload as an OpenAI-shaped Completion; raises ProviderError for
        responses that are errors in disguise (blocked content, malformed body)."""

    @abstractmethod
    def parse_error(self, status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
        """A non-2xx response as a classified ProviderError (returned, not raised).
        `payload` is the parsed JSON body, or the raw text when it was not JSON, or None."""

    def output_cap(self, body: Mapping[str, Any]) -> int | None:
        """The output-token cap per choice this adapter sends for `body`; None when it sends
        none (the model's own limit applies). Budget reservations rest on it."""
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return None
