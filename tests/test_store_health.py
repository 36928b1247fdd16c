"""Issue 14, finding 5: health tells the truth when state cannot be written.

With the disk full, commits failed, clients got only heartbeats (nothing stamped can be
delivered unstored), and /api/v1/health still said "healthy".  Now, once commits have
failed for ``STORE_GRACE``, clients get a ``system_status`` with ``state: down``,
/health answers 503, and both recover when the disk does; nothing is lost meanwhile.
"""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from conftest import ScriptedSource, collect_for, make_settings, receive_json, start_app, ws_url
from osintd.hub import STORE_GRACE


@pytest.fixture
def patient_clock():
    """Virtual time that jumps only after 20 ms of real idleness (the store works in threads)."""
    return trio.testing.MockClock(autojump_threshold=0.02)


async def test_a_store_that_cannot_commit_makes_health_unhealthy_and_recovers(tmp_path, patient_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(state_dir=tmp_path / "state"), source=source)
        store = app.store
        real_commit = store.commit
        full = False

        async def commit(batch):
            if full:
                raise OSError(28, "No space left on device")
            await real_commit(batch)
        store.commit = commit
        async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0"), message_queue_size=4096) as ws:
            await receive_json(ws)
            async with httpx.AsyncClient() as http:
                health = f"http://127.0.0.1:{app.port}/health"
                components = f"http://127.0.0.1:{app.port}/api/v1/health"
                await source.emit(source.event("org/before"))
                assert any(m["type"] == "new_event" for m in await collect_for(ws, 2))
                assert (await http.get(components)).json()["components"]["state"] == "operational"

                full = True
                await source.emit(*(source.event("org/during") for _ in range(3)))
                told = [m for m in await collect_for(ws, STORE_GRACE + 2) if m["type"] == "system_status"]
                assert told and told[-1]["status"] == "unhealthy" and told[-1]["components"]["state"] == "down"
                assert told[-1]["severity"] == "critical" and "state store" in told[-1]["message"]
                assert (await http.get(health)).status_code == 503
                assert app.hub.store_failures > 0

                full = False
                after = await collect_for(ws, 4)
                assert [m["repo_full_name"] for m in after if m["type"] == "new_event"] == ["org/during"] * 3
                recovered = [m for m in after if m["type"] == "system_status"]
                assert recovered and recovered[-1]["components"]["state"] == "operational"
                assert recovered[-1]["status"] != "unhealthy"
                assert (await http.get(health)).status_code == 200
        nursery.cancel_scope.cancel()
