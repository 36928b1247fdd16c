"""A client that follows a stream across kills and restarts, as a careful user's would.

``follow`` reconnects after every loss and resumes from the last seq it saw
(``?since&epoch``); every stamped message goes into ``seen`` once, and a gap or a
changed epoch fails the test where it happens.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import trio
import trio_websocket

#: Types that carry a seq of their own (heartbeats, and system_status or an error told
#: unstamped, repeat the last one: ``seq > last`` leaves those out).
STAMPED = {"new_event", "ranking_change", "trend_change", "summary_update", "metrics_update", "system_status", "error"}


async def follow(url_of: Callable[[], str], seen: list[dict], stop: trio.Event) -> None:
    """Until ``stop``: connect to ``url_of()`` (asked again at every reconnect, so a test can
    move the client to another node), resume, and collect."""
    epoch, last = None, 0
    while not stop.is_set():
        url = url_of()
        if epoch is not None:
            url += f"?since={last}&epoch={epoch}&snapshot=0"
        try:
            async with trio_websocket.open_websocket_url(url, message_queue_size=4096) as ws:
                while not stop.is_set():
                    message = json.loads(await ws.get_message())
                    if message["type"] == "connection":
                        resuming = epoch is not None
                        epoch = epoch or message["epoch"]
                        assert message["epoch"] == epoch
                        if not resuming and message["seq"] > last:
                            break  # broadcasts came first: reconnect and resume from 0
                    elif message["type"] == "resumed":
                        assert message["recovered"], message
                    elif message["type"] in STAMPED and message["seq"] > last:
                        assert message["seq"] == last + 1, (url, last, message)
                        last = message["seq"]
                        seen.append(message)
        except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed):
            await trio.sleep(0.05)
