// The Vercel AI SDK's OpenAI provider pointed at llmroute:
//   createOpenAI({ baseURL: "http://llmroute:4000/v1", apiKey })
// openai.chat(id) calls /chat/completions; openai(id) calls /responses.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";
import { env, main } from "./common.mjs";

const openai = createOpenAI({ baseURL: env.baseURL, apiKey: env.apiKey });
const prompt = "hello from the Vercel AI SDK";

await main({
  async chat() {
    const r = await generateText({ model: openai.chat(env.model), prompt, maxRetries: 0 });
    return { text: r.text, finish: r.finishReason, usage: r.usage };
  },
  async stream() {
    const r = streamText({ model: openai.chat(env.model), prompt, maxRetries: 0,
                           onError: () => {} });
    let text = "", parts = 0;
    for await (const t of r.textStream) {
      text += t;
      parts++;
    }
    return { text, parts, finish: await r.finishReason, usage: await r.usage };
  },
  // The first line of the SDK's own examples: the Responses API.
  async responses() {
    const r = await generateText({ model: openai(env.model), prompt, maxRetries: 0 });
    return { text: r.text, finish: r.finishReason, usage: r.usage };
  },
  async responses_stream() {
    const r = streamText({ model: openai(env.model), prompt, maxRetries: 0, onError: () => {} });
    let text = "";
    for await (const t of r.textStream) text += t;
    return { text, finish: await r.finishReason, usage: await r.usage };
  },
});
