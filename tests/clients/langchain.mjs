// LangChain JS's ChatOpenAI pointed at llmroute:
//   new ChatOpenAI({ model, apiKey, configuration: { baseURL: "http://llmroute:4000/v1" } })
import { ChatOpenAI } from "@langchain/openai";
import { env, main } from "./common.mjs";

const llm = new ChatOpenAI({ model: env.model, apiKey: env.apiKey, maxRetries: 0,
                             configuration: { baseURL: env.baseURL } });
const prompt = "hello from LangChain";

await main({
  async chat() {
    const m = await llm.invoke(prompt);
    return { content: m.content, usage: m.usage_metadata ?? null };
  },
  async stream() {
    let content = "", chunks = 0;
    for await (const c of await llm.stream(prompt)) {
      content += c.content;
      chunks++;
    }
    return { content, chunks };
  },
});
