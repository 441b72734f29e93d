"""Commands relayed to the process holding an HTTP-stream session, over Redis.

Each process listens on a channel of its own (``<prefix>:<node>``), which
carries commands posted to another process for a session it holds, and the
answers to its own relays.
"""

from __future__ import annotations

import asyncio
import logging
import re

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.broker.base import Relayed, RelayHandler
from hubbub.errors import Unavailable
from hubbub.ids import new_id

log = logging.getLogger("hubbub.broker")

NODE_NAME = re.compile(r"p_[0-9a-f]{27}")
RELAY_TIMEOUT = 5.0  # seconds to wait for the holding process's answer


class Relay(msgspec.Struct, array_like=True, tag="c"):
    request: str
    reply_to: str
    connection_id: str
    user_id: str
    frames: bytes


class Answer(msgspec.Struct, array_like=True, tag="a"):
    request: str
    taken: bool


class Relays:
    """One process's relays to the others, and its answers to theirs."""

    def __init__(self, url: str, prefix: str, origin: str) -> None:
        self.url = url
        self.prefix = prefix
        self.origin = origin
        self.channel = self.node_channel(origin)
        self.handler: RelayHandler | None = None
        self._client: aioredis.Redis | None = None
        self._answers: dict[str, asyncio.Future[bool]] = {}
        self._answering: set[asyncio.Task[None]] = set()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Relay | Answer)

    def node_channel(self, node: str) -> str:
        return f"{self.prefix}:{node}"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _publish_to(self, node: str, item: Relay | Answer) -> int:
        if self._client is None:
            self._client = aioredis.from_url(self.url)
        listeners: int = await self._client.publish(
            self.node_channel(node), self._encoder.encode(item)
        )
        return listeners

    async def relay(self, node: str, message: Relayed) -> bool:
        if not NODE_NAME.fullmatch(node):
            return False
        request = new_id("r")
        answer = self._answers[request] = asyncio.get_running_loop().create_future()
        unreachable = "the process holding this session cannot be reached"
        try:
            if not await self._publish_to(node, Relay(request, self.origin, *message)):
                return False
            return await asyncio.wait_for(answer, RELAY_TIMEOUT)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"{unreachable}: {exc}") from None
        except TimeoutError:
            raise Unavailable(f"{unreachable}: no answer in {RELAY_TIMEOUT:g} s") from None
        finally:
            self._answers.pop(request, None)

    def received(self, data: bytes) -> None:
        """A message on this process's own channel: a relayed command, or an answer."""
        try:
            item = self._decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed relayed message")
            return
        if isinstance(item, Answer):  # to one of this process's relays
            waiting = self._answers.get(item.request)
            if waiting is not None and not waiting.done():
                waiting.set_result(item.taken)
            return
        handler = self.handler
        taken = handler is not None and handler((item.connection_id, item.user_id, item.frames))
        if NODE_NAME.fullmatch(item.reply_to):
            answer = Answer(item.request, taken)
            task = asyncio.get_running_loop().create_task(self._answer(item.reply_to, answer))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, node: str, answer: Answer) -> None:
        try:
            await self._publish_to(node, answer)
        except (RedisError, OSError) as exc:  # the relaying process answers 503 in time
            log.warning("could not answer a relayed post: %s", exc)
