import asyncio
import json
import websockets

async def monitor_events():
    uri = "ws://localhost:8000/ws/live-updates"
    async with websockets.connect(uri) as ws:
        async for message in ws:
            data = json.loads(message)
            if data["type"] == "new_event":
                print(f"📨 {data['event_type']}: {data['title']}")

asyncio.run(monitor_events())
