// The official Anthropic Node SDK against llmroute's /v1/messages, as its
// README sets it up: new Anthropic({ baseURL: "http://llmroute:4000", apiKey })
// (LLMR_BASE_URL is the root here, without /v1).  And the OpenAI SDK
// against a Claude deployment, for the tool-call round trip.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { env, main } from "./common.mjs";

const client = new Anthropic({ baseURL: env.baseURL, apiKey: env.apiKey, maxRetries: 0 });
const messages = [{ role: "user", content: "hello from the Anthropic SDK" }];
const tools = [{ name: "get_weather", description: "weather of a city",
                 input_schema: { type: "object", properties: { city: { type: "string" } },
                                 required: ["city"] } }];

await main({
  async messages() {
    const r = await client.messages.create({ model: env.model, max_tokens: 64,
                                             system: "be brief", messages });
    return { type: r.type, role: r.role, content: r.content, stop: r.stop_reason,
             usage: r.usage };
  },
  // The SDK's streaming helper: it checks the event order itself and builds
  // the final message from the deltas.
  async messages_stream() {
    const s = client.messages.stream({ model: env.model, max_tokens: 64, messages });
    const types = [];
    let text = "";
    s.on("text", (t) => { text += t; });
    for await (const e of s) types.push(e.type);
    const m = await s.finalMessage();
    return { text, types, final: m.content, stop: m.stop_reason, usage: m.usage };
  },
  async messages_tools() {
    const r = await client.messages.create({ model: env.model, max_tokens: 64, messages, tools,
                                             tool_choice: { type: "any" } });
    const use = r.content.find((b) => b.type === "tool_use");
    // the round trip: the tool's result goes back as a tool_result
    const r2 = await client.messages.create({ model: env.model, max_tokens: 64, tools,
      messages: [...messages, { role: "assistant", content: r.content },
                 { role: "user", content: [{ type: "tool_result", tool_use_id: use.id,
                                             content: "sunny" }] }] });
    return { stop: r.stop_reason, name: use.name, input: use.input, second: r2.stop_reason };
  },
  async messages_tools_stream() {
    const s = client.messages.stream({ model: env.model, max_tokens: 64, messages, tools });
    let json = "";
    s.on("inputJson", (delta) => { json += delta; });
    const m = await s.finalMessage();
    const use = m.content.find((b) => b.type === "tool_use");
    return { stop: m.stop_reason, name: use?.name, input: use?.input, json };
  },
  async count_tokens() {
    const r = await client.messages.countTokens({ model: env.model, messages });
    return { input_tokens: r.input_tokens };
  },
  async error() {
    await client.messages.create({ model: env.model, max_tokens: 8, messages });
    return "no error";
  },
  // The OpenAI SDK (base URL .../v1) against a Claude deployment: a tool call.
  async openai_tools() {
    const oai = new OpenAI({ baseURL: env.baseURL + "/v1", apiKey: env.apiKey, maxRetries: 0 });
    const r = await oai.chat.completions.create({
      model: env.model, messages: [{ role: "user", content: "weather in Paris?" }],
      tools: [{ type: "function", function: { name: "get_weather",
                                              parameters: tools[0].input_schema } }] });
    const c = r.choices[0];
    return { finish: c.finish_reason, calls: c.message.tool_calls, usage: r.usage };
  },
  async openai_tools_stream() {
    const oai = new OpenAI({ baseURL: env.baseURL + "/v1", apiKey: env.apiKey, maxRetries: 0 });
    const s = await oai.chat.completions.create({
      model: env.model, stream: true, stream_options: { include_usage: true },
      messages: [{ role: "user", content: "weather in Paris?" }],
      tools: [{ type: "function", function: { name: "get_weather",
                                              parameters: tools[0].input_schema } }] });
    let name = null, args = "", finish = null, usage = null;
    for await (const c of s) {
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        for (const t of ch.delta?.tool_calls ?? []) {
          name = t.function?.name ?? name;
          args += t.function?.arguments ?? "";
        }
        finish = ch.finish_reason ?? finish;
      }
    }
    return { name, args, finish, usage };
  },
});
