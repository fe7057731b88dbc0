/**
 * A GraphQL subscription over SSE (`text/event-stream`), as a connector that cannot hold a
 * WebSocket sends it; `token` null sends none.
 */
export function sseSubscription(
  graphqlUrl: string,
  token: string | null,
  body: { query: string; variables?: Record<string, unknown> },
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(graphqlUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
    signal: signal ?? null,
  });
}

/**
 * Reads an event stream, calling `trigger` before each read (subscribing has no acknowledgement, so
 * events are caused until one arrives), until `done` holds for the text read or `timeoutMs` passes.
 */
export async function readEventStreamUntil(
  response: Response,
  trigger: () => unknown,
  done: (text: string) => boolean,
  timeoutMs = 10_000,
): Promise<string> {
  const reader = response.body!.getReader();
  let text = '';
  const deadline = Date.now() + timeoutMs;
  while (!done(text) && Date.now() < deadline) {
    await trigger();
    const chunk = await Promise.race([
      reader.read(),
      new Promise<undefined>((resolve) => setTimeout(resolve, 200)),
    ]);
    if (chunk && !chunk.done) text += Buffer.from(chunk.value).toString();
  }
  reader.releaseLock();
  return text;
}
