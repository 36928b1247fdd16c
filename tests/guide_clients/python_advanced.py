import asyncio
import json
from typing import Callable, Dict
import websockets

class LiveUpdatesClient:
    def __init__(self, uri: str = "ws://localhost:8000/ws/live-updates"):
        self.uri = uri
        self.websocket = None
        self.handlers: Dict[str, Callable] = {}
        self.client_id = None
        self.connected = False
    
    def on(self, message_type: str, handler: Callable):
        """Register a message handler."""
        self.handlers[message_type] = handler
    
    async def connect(self):
        """Connect to WebSocket."""
        self.websocket = await websockets.connect(self.uri)
        self.connected = True
        print("✅ Connected to live updates")
        
        # Start receiving messages
        asyncio.create_task(self._receive_messages())
    
    async def _receive_messages(self):
        """Receive and handle messages."""
        try:
            async for message in self.websocket:
                data = json.loads(message)
                message_type = data.get("type")
                
                # Store client ID
                if message_type == "connection":
                    self.client_id = data.get("client_id")
                
                # Call registered handler
                if message_type in self.handlers:
                    await self.handlers[message_type](data)
        
        except websockets.exceptions.ConnectionClosed:
            print("❌ Connection closed")
            self.connected = False
    
    async def ping(self):
        """Send ping to check connection."""
        if self.connected:
            await self.websocket.send(json.dumps({"type": "ping"}))
    
    async def close(self):
        """Close connection."""
        if self.websocket:
            await self.websocket.close()
        self.connected = False

# Usage
async def main():
    client = LiveUpdatesClient()
    
    # Register handlers
    client.on("new_event", lambda data: print(f"📨 {data['title']}"))
    client.on("ranking_change", lambda data: print(f"📊 Rank change: {data['repo_full_name']}"))
    
    # Connect
    await client.connect()
    
    # Keep running
    while client.connected:
        await asyncio.sleep(1)

asyncio.run(main())
