"""A small synchronous client of the batchgate HTTP API (what the CLI uses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


class APIError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            resp = self._http.post(
                "/v1/files",
                files={"file": (path.name, fp, "application/jsonl")},
                data={"purpose": "batch"},
                timeout=600,
            )
        return self._check(resp)

    def create_batch(self, input_file_id: str, endpoint: str, **extra: Any) -> dict[str, Any]:
        body = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h"}
        body.update({k: v for k, v in extra.items() if v not in (None, [], ())})
        return self._check(self._http.post("/v1/batches", json=body))

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._check(self._http.get(f"/v1/batches/{batch_id}"))

    def batches(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return self._check(self._http.get("/v1/batches", params=params))

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self._check(self._http.post(f"/v1/batches/{batch_id}/cancel"))

    def download(self, file_id: str, dest: Path) -> int:
        n = 0
        with self._http.stream("GET", f"/v1/files/{file_id}/content", timeout=600) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as fp:
                for block in resp.iter_bytes():
                    fp.write(block)
                    n += len(block)
            tmp.replace(dest)
        return n

    def health(self) -> dict[str, Any]:
        return self._http.get("/healthz", timeout=5).json()
