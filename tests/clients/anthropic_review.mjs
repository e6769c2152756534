// Review of /v1/messages with the official Anthropic Node SDK (issue 16):
// the SDK's own retry on 529 (it honours Retry-After), and its streaming
// helper when the upstream ends a stream with an error event.
import Anthropic from "@anthropic-ai/sdk";
import { env, main } from "./common.mjs";

const messages = [{ role: "user", content: "hello from the Anthropic SDK" }];

function apiError(e) {
  return { status: e?.status ?? null, type: e?.error?.error?.type ?? null,
           message: e?.error?.error?.message ?? String(e?.message ?? e),
           name: e?.constructor?.name };
}

await main({
  // maxRetries 2: three calls in all when every answer is a 529.
  async retry_529() {
    const client = new Anthropic({ baseURL: env.baseURL, apiKey: env.apiKey, maxRetries: 2 });
    const t0 = Date.now();
    try {
      await client.messages.create({ model: env.model, max_tokens: 8, messages });
      return { error: null };
    } catch (e) {
      return { error: apiError(e), ms: Date.now() - t0 };
    }
  },
  // messages.stream(): the text so far, then the error event as a thrown error.
  async stream_error() {
    const client = new Anthropic({ baseURL: env.baseURL, apiKey: env.apiKey, maxRetries: 0 });
    const s = client.messages.stream({ model: env.model, max_tokens: 8, messages });
    let text = "";
    const types = [];
    s.on("text", (t) => { text += t; });
    try {
      for await (const e of s) types.push(e.type);
      return { text, types, error: null };
    } catch (e) {
      return { text, types, error: apiError(e) };
    }
  },
});
