python -c "import websockets; import asyncio; asyncio.run(websockets.connect('ws://localhost:8000/ws/live-updates'))"
