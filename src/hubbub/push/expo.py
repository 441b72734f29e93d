"""Expo's push API (https://docs.expo.dev/push-notifications/sending-notifications/).

``POST`` up to 100 messages to the send endpoint; the answer holds one ticket
per message, in order. A ticket ``ok`` carries an id whose receipt, fetched
later from the receipts endpoint, tells whether Apple or Google took it; an
error ``DeviceNotRegistered`` (on a ticket or a receipt) means the token is
gone. 429 and 5xx answers, and ``MessageRateExceeded``, are retried.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import msgspec

from hubbub.push.base import (
    REQUEST_DEADLINE,
    SENT,
    Outcome,
    Push,
    Receipt,
    retry_after,
    transient,
)

SEND_URL = "https://exp.host/--/api/v2/push/send"
BATCH = 100
"""Messages per request: Expo's limit."""
RECEIPTS_BATCH = 300
"""Receipt ids per request (Expo takes up to 1,000; its own SDKs ask for 300)."""
TOKEN = re.compile(r"Expo(nent)?PushToken\[[^\[\]\s]{1,200}\]")
GONE = "DeviceNotRegistered"
RETRIED = "MessageRateExceeded"
MIXED_PROJECTS = "PUSH_TOO_MANY_EXPERIENCE_IDS"
TIMEOUT = 10.0


def receipts_url(send_url: str) -> str:
    return send_url.rsplit("/", 1)[0] + "/getReceipts"


def valid_token(token: str) -> bool:
    return TOKEN.fullmatch(token) is not None


def message(push: Push) -> dict[str, Any]:
    notice = push.notice
    return {
        "to": push.device.token,
        "title": notice.title,
        "body": notice.body,
        "badge": notice.badge,
        "sound": "default",
        "priority": "high",
        "expiration": push.expires_at,
        "data": {**notice.data, "collapse_id": notice.collapse_id, "push_id": push.id},
    }


def _ticket(ticket: Any) -> Outcome:
    if not isinstance(ticket, dict):
        return Outcome("retry", "Expo answered a ticket that is not an object")
    if ticket.get("status") == "ok":
        tid = ticket.get("id")
        return Outcome("sent", ticket=tid if isinstance(tid, str) else None)
    details = ticket.get("details")
    error = details.get("error") if isinstance(details, dict) else None
    detail = f"{error or 'error'}: {ticket.get('message', '')}".strip()
    if error == GONE:
        return Outcome("gone", detail)
    if error == RETRIED:
        return Outcome("retry", detail)
    return Outcome("failed", detail)


class ExpoProvider:
    name = "expo"
    batch = BATCH

    def __init__(
        self,
        url: str = SEND_URL,
        access_token: str | None = None,
        receipts: str | None = None,
        timeout: float = TIMEOUT,
        deadline: float = REQUEST_DEADLINE,
    ) -> None:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        self.url = url
        self.receipts_url = receipts or receipts_url(url)
        self.deadline = deadline
        self._http = httpx.AsyncClient(headers=headers, timeout=min(timeout, deadline))

    async def _post(self, url: str, body: Any) -> httpx.Response:
        return await asyncio.wait_for(self._http.post(url, json=body), self.deadline)

    async def send(self, pushes: list[Push], split: bool = True) -> list[Outcome]:
        try:
            response = await self._post(self.url, [message(p) for p in pushes])
        except (httpx.HTTPError, TimeoutError) as exc:
            return [Outcome("retry", f"Expo unreachable: {exc!r}")] * len(pushes)
        if response.status_code != 200:
            detail = f"Expo answered {response.status_code}"
            projects = _projects(response) if split else None
            if projects is not None:
                return await self._by_project(pushes, projects)
            if transient(response.status_code):
                after = retry_after(response.headers.get("retry-after"))
                return [Outcome("retry", detail, after)] * len(pushes)
            return [Outcome("failed", f"{detail}: {response.text[:200]}")] * len(pushes)
        try:
            tickets = msgspec.json.decode(response.content).get("data")
        except (msgspec.DecodeError, AttributeError):
            tickets = None
        if not isinstance(tickets, list) or len(tickets) != len(pushes):
            # Not what the protocol promises: nothing is known to be sent.
            return [Outcome("retry", "Expo answered without one ticket per message")] * len(pushes)
        return [_ticket(t) for t in tickets]

    async def _by_project(self, pushes: list[Push], projects: dict[str, str]) -> list[Outcome]:
        """Send again, one request per project, what Expo refused for mixing projects."""
        groups: dict[str, list[int]] = {}
        for i, push in enumerate(pushes):
            groups.setdefault(projects.get(push.device.token, ""), []).append(i)
        outcomes: list[Outcome] = [Outcome("retry", "not sent")] * len(pushes)
        # At once, so that the whole takes one request's time at most.
        answers = await asyncio.gather(
            *(self.send([pushes[i] for i in indices], split=False) for indices in groups.values())
        )
        for indices, sent in zip(groups.values(), answers, strict=True):
            for i, outcome in zip(indices, sent, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def receipts(self, tickets: list[str]) -> list[Receipt]:
        found: list[Receipt] = []
        for start in range(0, len(tickets), RECEIPTS_BATCH):
            ids = tickets[start : start + RECEIPTS_BATCH]
            asked = set(ids)
            try:
                response = await self._post(self.receipts_url, {"ids": ids})
                data = msgspec.json.decode(response.content).get("data")
            except (httpx.HTTPError, TimeoutError, msgspec.DecodeError, AttributeError):
                continue  # asked again at the next check
            if response.status_code != 200 or not isinstance(data, dict):
                continue
            found.extend(
                Receipt(tid, SENT if r.get("status") == "ok" else _ticket(r))
                for tid, r in data.items()
                if tid in asked and isinstance(r, dict)
            )
        return found

    async def close(self) -> None:
        await self._http.aclose()


def _projects(response: httpx.Response) -> dict[str, str] | None:
    """Token -> project, when Expo refused a request for holding several projects' tokens.

    Its error ``PUSH_TOO_MANY_EXPERIENCE_IDS`` names, per project, the tokens of it.
    """
    try:
        errors = msgspec.json.decode(response.content).get("errors")
        error = errors[0]
    except (msgspec.DecodeError, AttributeError, TypeError, IndexError, KeyError):
        return None
    details = error.get("details") if isinstance(error, dict) else None
    if error.get("code") != MIXED_PROJECTS or not isinstance(details, dict):
        return None
    return {
        token: project
        for project, tokens in details.items()
        if isinstance(tokens, list)
        for token in tokens
        if isinstance(token, str)
    }
