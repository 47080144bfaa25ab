"""Clients for serving tests: inference requests sent in a loop, every answer kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np


def infer_request(shape: tuple[int, int, int], seed: int = 0) -> bytes:
    """An Open Inference Protocol request for one UINT8 image of `shape` (C, H, W)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(1, *shape), dtype=np.uint8)
    tensor = {
        "name": "input",
        "shape": list(pixels.shape),
        "datatype": "UINT8",
        "data": pixels.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic()
    status: int  # 0: no HTTP answer at all
    model_version: str | None
    detail: str


@dataclass
class Traffic:
    """`concurrency` clients, each sending a request, waiting for its answer, pausing, and again."""

    url: str
    model: str
    payload: bytes
    concurrency: int = 1
    pause: float = 0.05
    answers: list[Answer] = field(default_factory=list)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> Traffic:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.concurrency)]
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _client(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self.answers.append(await self.send(session))
                await asyncio.sleep(self.pause)

    async def send(self, session: aiohttp.ClientSession) -> Answer:
        """One inference request, and its answer."""
        endpoint = f"{self.url}/v2/models/{self.model}/infer"
        headers = {"Content-Type": "application/json"}
        try:
            async with session.post(endpoint, data=self.payload, headers=headers) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            return Answer(time.monotonic(), 0, None, repr(error))
        version = json.loads(text).get("model_version") if response.status == 200 else None
        return Answer(time.monotonic(), response.status, version, text[:300])

    @property
    def failures(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]

    def versions(self, since: float = 0) -> set[str | None]:
        return {
            answer.model_version for answer in self.answers if answer.at >= since and answer.status == 200
        }
