import asyncio
import json
import websockets
from collections import Counter

event_counter = Counter()

async def count_events():
    uri = "ws://localhost:8000/ws/live-updates"
    
    async with websockets.connect(uri) as ws:
        async for message in ws:
            data = json.loads(message)
            
            if data["type"] == "new_event":
                event_type = data["event_type"]
                event_counter[event_type] += 1
                
                print(f"\rCommits: {event_counter['commit']} | "
                      f"PRs: {event_counter['pull_request']} | "
                      f"Issues: {event_counter['issue']}", end="")

asyncio.run(count_events())
