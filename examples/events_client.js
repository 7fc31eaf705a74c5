// A browser client of the events stream (docs/realtime.md): Server-Sent Events with a
// single-use ticket, or a WebSocket that authenticates in its first message. Plain JavaScript
// for a <script> tag, no build step (add `export` to the two functions for a module).
//
//   const follower = followEvents("https://api.example.com", getAccessToken, {
//     onEvent: (event) => console.log(event.id, event.type, event.data),
//     onReady: () => showConnected(),       // caught up; live events follow
//     onGap: () => refetchEverything(),    // events after our id are no longer kept
//     onRevoked: () => signInAgain(),      // logged out elsewhere, password changed...
//   });
//   follower.stop();
//
// `getAccessToken` is your app's: a function returning (a promise of) a valid access token.

// Frames and reconnects, shared by both transports. `open(lastEventId)` opens one connection.
function follower(handlers, open) {
  const state = { lastEventId: null, retryAfterMs: null, failures: 0, stopped: false };
  const reconnect = () => {
    if (state.stopped) return;
    // The server's hint after a restart (`stream.closing`), or a jittered backoff: clients
    // dropped together must not all come back at the same moment.
    const backoff = Math.min(30_000, 500 * 2 ** Math.min(state.failures, 10));
    const delay = state.retryAfterMs ?? backoff * (0.5 + Math.random() / 2);
    state.retryAfterMs = null;
    state.failures += 1;
    setTimeout(() => open(state.lastEventId).catch(reconnect), delay);
  };
  const dispatch = (frame) => {
    switch (frame.type) {
      case "stream.ready": // replayed events came before this; live ones follow
        state.failures = 0;
        state.lastEventId = frame.last_event_id ?? state.lastEventId;
        handlers.onReady?.(frame);
        break;
      case "stream.gap":
        handlers.onGap?.(frame);
        break;
      case "stream.closing": // the server restarts: reconnect after this long
        state.retryAfterMs = frame.retry_after_ms;
        break;
      case "stream.closed": // the session was revoked: a new connection would be refused
        state.stopped = true;
        handlers.onRevoked?.(frame);
        break;
      default: // a domain event: {id, type, data, occurred_at}
        state.lastEventId = frame.id;
        handlers.onEvent(frame);
    }
  };
  return { state, reconnect, dispatch };
}

// Server-Sent Events. An EventSource reconnects by itself and resends `Last-Event-ID`, but it
// would reuse its URL, whose ticket is spent: on every error, close it and open a new one with
// a new ticket and the last id in the query.
function followEvents(api, getAccessToken, handlers) {
  let source = null;
  const open = async (lastEventId) => {
    const response = await fetch(`${api}/api/v1/events/tickets`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await getAccessToken()}` },
    });
    if (!response.ok) throw new Error(`ticket refused: ${response.status}`);
    const url = new URL(`${api}/api/v1/events`);
    url.searchParams.set("ticket", (await response.json()).ticket);
    if (lastEventId !== null) url.searchParams.set("last_event_id", lastEventId);
    if (f.state.stopped) return;
    source = new EventSource(url);
    source.onmessage = (message) => {
      f.dispatch(JSON.parse(message.data));
      if (f.state.stopped) source.close();
    };
    source.onerror = () => {
      source.close(); // the stream ended or never opened (a refusal is an error too)
      f.reconnect();
    };
  };
  const f = follower(handlers, open);
  open(null).catch(f.reconnect);
  return { stop: () => { f.state.stopped = true; source?.close(); } };
}

// WebSocket: the access token goes in the first message, never in the URL.
function followEventsOverWebSocket(api, getAccessToken, handlers) {
  let socket = null;
  const open = async (lastEventId) => {
    const token = await getAccessToken();
    if (f.state.stopped) return;
    socket = new WebSocket(`${api.replace(/^http/, "ws")}/api/v1/events`);
    socket.onopen = () => {
      socket.send(JSON.stringify({ token, last_event_id: lastEventId ?? undefined }));
    };
    socket.onmessage = (message) => f.dispatch(JSON.parse(message.data));
    // 1001: restart (after `stream.closing`); 1008: refused or revoked; 1013: too far behind or
    // too many streams; 1006: the network. Every one but a revocation reconnects.
    socket.onclose = () => f.reconnect();
  };
  const f = follower(handlers, open);
  open(null).catch(f.reconnect);
  return { stop: () => { f.state.stopped = true; socket?.close(1000); } };
}
