"""A small synchronous client of the batchgate HTTP API (what the CLI uses)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

CURSOR_HEADER = "batchgate-cursor"
STATUS_HEADER = "batchgate-batch-status"


class ClientError(RuntimeError):
    """An expected failure of a request: shown to a user as one line, never a traceback."""


class APIError(ClientError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Unreachable(ClientError):
    """No answer from the API (nothing listening, wrong port, a timeout)."""


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Transport failures become one `Unreachable` that says what to check."""
        try:
            yield
        except httpx.ConnectError:
            raise Unreachable(
                f"cannot reach batchgate at {self.base_url}: connection refused; "
                "is `batchgate up` running?"
            ) from None
        except httpx.TimeoutException:
            raise Unreachable(f"batchgate at {self.base_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach batchgate at {self.base_url}: {exc}") from None

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        with self._reaching():
            return self._check(self._http.request(method, url, **kwargs))

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except Exception:
                message = resp.text[:500]
            raise APIError(resp.status_code, message)
        return resp.json()

    def upload(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as fp:
            return self._call(
                "POST",
                "/v1/files",
                files={"file": (path.name, fp, "application/jsonl")},
                data={"purpose": "batch"},
                timeout=600,
            )

    def create_batch(self, input_file_id: str, endpoint: str, **extra: Any) -> dict[str, Any]:
        body = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h"}
        body.update({k: v for k, v in extra.items() if v not in (None, [], ())})
        return self._call("POST", "/v1/batches", json=body)

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/batches/{batch_id}")

    def batches(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return self._call("GET", "/v1/batches", params=params)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/batches/{batch_id}/cancel")

    def download(self, file_id: str, dest: Path) -> int:
        n = 0
        tmp = dest.with_name(dest.name + ".part")
        with self._stream(f"/v1/files/{file_id}/content") as resp, open(tmp, "wb") as fp:
            for block in resp.iter_bytes():
                fp.write(block)
                n += len(block)
        tmp.replace(dest)
        return n

    def results(
        self, batch_id: str, since: str | None, sink: Callable[[bytes], None]
    ) -> tuple[str, str]:
        """Stream the lines the batch finished after cursor `since` into `sink`; returns the
        cursor to pass next time and the batch status when the answer was read."""
        params = {"since": since} if since else None
        with self._stream(f"/v1/batches/{batch_id}/results", params=params) as resp:
            for block in resp.iter_bytes():
                sink(block)
            return resp.headers[CURSOR_HEADER], resp.headers[STATUS_HEADER]

    @contextmanager
    def _stream(self, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        with self._reaching(), self._http.stream("GET", url, timeout=600, **kwargs) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            yield resp

    def health(self) -> dict[str, Any]:
        with self._reaching():
            return self._http.get("/healthz", timeout=5).json()
